"""Dataset side of the parametrized diffusion problems (thermal block, Gaussian bump).

A :class:`ParametricDiffusionPDE` is both a :class:`~surrogates.pdes.base.PDE` (what
``surrogates-generate`` needs) and a :class:`~surrogates.solvers.reduced_basis.problem.DiffusionProblem`
(what the reduced basis method needs), so the dataset and the reduced model solve the same discrete
problem. Datasets store, per sample, the coefficient field ``a (x, y)``, one scalar per parameter
component, and the solution ``u (x, y)`` on the ``resolution x resolution`` grid.
"""

from __future__ import annotations

import numpy as np

from surrogates.pdes.base import PDE, Coordinate, Variable
from surrogates.solvers.reduced_basis.problem import DiffusionProblem
from surrogates.solvers.report import SolverReport


class ParametricDiffusionPDE(DiffusionProblem, PDE):
    """``-div(a(x; mu) grad u) = f`` on the unit square, ``u = 0`` on the boundary, ``mu`` uniform in a box.

    Subclasses set ``name``, :attr:`parameter_space` and the coefficient; ``inputs`` are ``a`` and
    the parameter names, ``targets`` is ``u``.
    """

    targets = ("u",)
    long_names: dict[str, str] = {}

    @property
    def inputs(self) -> tuple[str, ...]:  # type: ignore[override]
        return ("a", *self.parameter_space.names)

    def _grid_points(self) -> np.ndarray:
        if self.mesh_path is not None:
            raise ValueError("datasets are written on the structured grid; mesh_path is for the reduced model only")
        x = np.linspace(0.0, 1.0, self.resolution)
        gx, gy = np.meshgrid(x, x, indexing="ij")
        return np.column_stack([gx.ravel(), gy.ravel()])

    def variables(self) -> dict[str, Variable]:
        out = {"a": Variable("a", ("x", "y"), "1", "diffusion coefficient")}
        for name in self.parameter_space.names:
            out[name] = Variable(name, (), "1", self.long_names.get(name, f"parameter {name}"))
        out["u"] = Variable("u", ("x", "y"), "1", "solution")
        return out

    def coords(self) -> dict[str, Coordinate]:
        x = np.linspace(0.0, 1.0, self.resolution)
        return {"x": Coordinate(x, "1", "x"), "y": Coordinate(x.copy(), "1", "y")}

    def sample_inputs(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Uniform parameters; ``{"a": (n, s, s), name: (n,) for each parameter}``."""
        mus = self.parameter_space.sample_uniform(n, rng)
        s = self.resolution
        a = self.coefficient(self._grid_points(), mus).reshape(n, s, s)
        return {"a": a, **{name: mus[:, k] for k, name in enumerate(self.parameter_space.names)}}

    def solve(self, inputs: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], SolverReport]:
        """Full solves with the exact operator and the project's PCG; ``{"u": (n, s, s)}``."""
        self._grid_points()  # refuses mesh files
        mus = np.column_stack([np.asarray(inputs[name], dtype=np.float64) for name in self.parameter_space.names])
        mus = self.parameter_space.check(mus)
        report = SolverReport(
            method=f"pcg+{self.preconditioner}",
            parameters={
                "rtol": self.rtol,
                "preconditioner": self.preconditioner,
                "discretization": self.discretization,
                "fd_rule": self.fd_rule if self.discretization == "fd" else None,
            },
        )
        u = np.empty((len(mus),) + (self.resolution, self.resolution))
        for i, mu in enumerate(mus):
            x, iterations, residual = self.solve_system(self.operator(mu), self.rhs(mu))
            u[i] = self.layout.to_nodes(x)
            report.iterations.append(int(iterations))
            report.residuals.append(float(residual))
        return {"u": u}, report

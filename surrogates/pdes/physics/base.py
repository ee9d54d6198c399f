"""Physics-informed problems: one PDE instance on a box, its residual by autograd, its side
conditions and a reference solution.

This interface serves physics-informed training (:mod:`surrogates.tasks.physics_informed`), where a
network ``u_fn: (P, d) -> (P, 1)`` is fitted to a single PDE instance by minimizing

    w_r mean |R[u](x_c)|^2  +  sum_c w_c mean |B_c[u](x_c)|^2

over collocation points in the domain and points on the boundary / at the initial time. It is
separate from :class:`surrogates.pdes.base.PDE`, which describes parametric families for dataset
generation. Columns of the points follow :attr:`PhysicsProblem.coordinates`, e.g. ``("x", "y")`` or
``("t", "x")``; the residual is built from derivatives that ``torch.autograd`` takes through
``u_fn``, so any differentiable network (an MLP, physics-informed Gaussians) or an exact solution
written with torch functions can be plugged in.
"""

from __future__ import annotations

import abc
import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from surrogates.arguments import check_count, check_number

__all__ = [
    "PhysicsProblem", "Reference", "UFunction", "face_points", "flatten", "gradient",
    "second_derivative", "uniform_points",
]

MAX_REFERENCE_POINTS = 10**7
"""Most points of a reference grid (:meth:`PhysicsProblem.reference`); checked before anything is allocated."""

UFunction = Callable[[torch.Tensor], torch.Tensor]
"""A differentiable function of points ``(P, d) -> (P, 1)`` (or ``(P,)``)."""


def gradient(u: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """All first derivatives ``du/dx_j`` of a pointwise function ``u`` (shape ``(P,)`` or ``(P, 1)``) of ``x`` (``(P, d)``), shape ``(P, d)``.

    The graph is kept (``create_graph=True``) so that the result can be differentiated again and
    backpropagated to the parameters of ``u``.
    """
    return torch.autograd.grad(u, x, torch.ones_like(u), create_graph=True)[0]


def second_derivative(du: torch.Tensor, x: torch.Tensor, j: int) -> torch.Tensor:
    """``d^2 u / dx_j^2`` from the first derivatives ``du`` (``(P, d)``, from :func:`gradient`); shape ``(P,)``."""
    return gradient(du[:, j], x)[:, j]


def uniform_points(n: int, bounds: list[tuple[float, float]], generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` points drawn uniformly in the box ``bounds`` (one ``(low, high)`` per column), shape ``(n, d)``."""
    box = torch.tensor(bounds, dtype=torch.float64)
    u = torch.rand(n, len(bounds), generator=generator, dtype=torch.float64)
    return (box[:, 0] + u * (box[:, 1] - box[:, 0])).to(torch.get_default_dtype())


@dataclass
class Reference:
    """A reference solution on a tensor-product grid.

    Attributes
    ----------
    coords
        One 1D array per coordinate, in the order of :attr:`PhysicsProblem.coordinates`.
    values
        Shape ``(len(coords[0]), ..., len(coords[-1]))`` (``indexing="ij"``).
    method
        How it was obtained, e.g. ``"exact"`` or ``"ETDRK4, 512 modes, dt=1e-4"``.
    """

    coords: list[np.ndarray]
    values: np.ndarray
    method: str = "exact"

    def points(self) -> np.ndarray:
        """The grid's points, shape ``(prod(shape), d)``, rows in C order of :attr:`values`."""
        mesh = np.meshgrid(*self.coords, indexing="ij")
        return np.stack([m.ravel() for m in mesh], axis=-1)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.values.shape)


class PhysicsProblem(abc.ABC):
    """Base class of physics-informed problems. Subclasses are dataclasses of their parameters.

    Subclasses set :attr:`name` and :attr:`coordinates` and implement :meth:`bounds`,
    :meth:`residual`, :meth:`sample_conditions`, :meth:`condition_residuals` and :meth:`reference`;
    manufactured problems also implement :meth:`exact_solution`.
    """

    name: str = ""
    coordinates: tuple[str, ...] = ()

    @property
    def dim(self) -> int:
        """Number of input coordinates ``d``."""
        return len(self.coordinates)

    @abc.abstractmethod
    def bounds(self) -> list[tuple[float, float]]:
        """The domain box, one ``(low, high)`` per coordinate."""

    @abc.abstractmethod
    def residual(self, u_fn: UFunction, points: torch.Tensor) -> torch.Tensor:
        """PDE residual ``R[u]`` at ``points`` (``(P, d)``, ``requires_grad`` set by the caller); shape ``(P,)``."""

    @abc.abstractmethod
    def sample_conditions(self, n: int, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Points for each boundary / initial condition, ``{name: (n_c, d)}``; ``n`` per condition (or per face)."""

    @abc.abstractmethod
    def condition_residuals(self, u_fn: UFunction, points: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Residual of each condition at its points (from :meth:`sample_conditions`), ``{name: (n_c,)}``."""

    @abc.abstractmethod
    def reference(self, resolution: int | list[int] = 101) -> Reference:
        """The reference solution on a grid with ``resolution`` points per coordinate (an int for all)."""

    def exact_solution(self, points: torch.Tensor) -> torch.Tensor:
        """Closed-form solution ``(P, d) -> (P,)`` in torch, for manufactured problems."""
        raise NotImplementedError(f"{type(self).__name__} has no closed-form solution")

    def sample_collocation(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` collocation points, uniform in the domain box; shape ``(n, d)``."""
        return uniform_points(n, self.bounds(), generator)

    def config(self) -> dict:
        """``{"name": registered name, "kwargs": {...}}``: enough to rebuild the problem (checkpoints
        resolve the name in :mod:`surrogates.checkpoint.registry`)."""
        kwargs = dataclasses.asdict(self) if dataclasses.is_dataclass(self) else {}
        return {"name": self.name, "kwargs": kwargs}

    def _resolution(self, resolution: int | list[int]) -> list[int]:
        sizes = [int(resolution)] * self.dim if isinstance(resolution, int) else [int(r) for r in resolution]
        if len(sizes) != self.dim or min(sizes) < 2:
            raise ValueError(f"resolution must give >= 2 points for each of {self.coordinates}, got {resolution}")
        if math.prod(sizes) > MAX_REFERENCE_POINTS:
            raise ValueError(f"resolution {resolution} makes a grid of {math.prod(sizes)} points, more than {MAX_REFERENCE_POINTS}")
        return sizes

    def _check_fields(self, **limits: tuple[float, float]) -> None:
        """Every ``float`` field of the dataclass a finite number and every ``int`` field an integer, within
        ``limits[name] = (low, high)`` when given (``ValueError`` otherwise): a problem rebuilt from a file
        must not hold NaN, a string for a number, or an unbounded size."""
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            low, high = limits.get(item.name, (-math.inf, math.inf))
            if item.type in ("int", int):
                check_count(item.name, value, int(low) if math.isfinite(low) else -(2**63), int(high) if math.isfinite(high) else None)
            elif item.type in ("float", float):
                check_number(item.name, value, low, high)

    def _grid(self, resolution: int | list[int]) -> list[np.ndarray]:
        return [np.linspace(lo, hi, n) for (lo, hi), n in zip(self.bounds(), self._resolution(resolution))]

    def _exact_reference(self, resolution: int | list[int]) -> Reference:
        coords = self._grid(resolution)
        grid = Reference(coords, np.zeros([len(c) for c in coords]))
        points = torch.as_tensor(grid.points(), dtype=torch.float64)
        grid.values = self.exact_solution(points).reshape(grid.shape).numpy()
        return grid


def face_points(
    bounds: list[tuple[float, float]], column: int, value: float, n: int, generator: torch.Generator | None
) -> torch.Tensor:
    """``n`` points uniform on the face ``x_column = value`` of the box; shape ``(n, d)``."""
    points = uniform_points(n, bounds, generator)
    points[:, column] = value
    return points


def flatten(u: torch.Tensor) -> torch.Tensor:
    """``(P, 1)`` or ``(P,)`` network output as ``(P,)``."""
    return u.reshape(u.shape[0]) if u.ndim > 1 else u

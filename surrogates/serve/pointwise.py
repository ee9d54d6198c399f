"""`PointwiseSurrogate`: a physics-informed coordinate network (PIG, PINN) loaded from its checkpoint alone.

A pointwise model is the solution of *one* PDE instance: a network ``u(x)`` mapping points ``(P, d)``
of the problem's domain box to values ``(P, 1)``. It takes query points, not fields, and it is only
meaningful inside the box it was trained on (a coordinate network extrapolates arbitrarily), so
:meth:`PointwiseSurrogate.predict` refuses points outside the box with a ``ValueError``.

Examples
--------
>>> s = PointwiseSurrogate.load("outputs/train/runs/<run>/checkpoints/best.ckpt")  # doctest: +SKIP
>>> s.coordinates, s.bounds                          # (['x', 'y'], [(-1.0, 1.0), (-1.0, 1.0)])  # doctest: +SKIP
>>> u = s.predict(np.array([[0.0, 0.5], [0.25, -1.0]]))   # (2, 2) points -> (2,) values  # doctest: +SKIP
>>> grid = s.predict_grid(np.linspace(-1, 1, 101), np.linspace(-1, 1, 101))   # (101, 101)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from surrogates.checkpoint import Checkpoint, read_checkpoint
from surrogates.errors import CheckpointError
from surrogates.serve.inputs import InputError
from surrogates.serve.surrogate import checkpoint_metadata, require_kind
from surrogates.schema import DataSchema

__all__ = ["BOUNDARY_TOLERANCE", "PointwiseSurrogate"]

BOUNDARY_TOLERANCE = 8 * float(np.finfo(np.float32).eps)
"""Points up to this fraction of a side of the box outside it count as on its boundary (about 1e-6):
float32 round-off of a boundary coordinate, never extrapolation."""


class PointwiseSurrogate:
    """A coordinate network with its PDE problem and domain box, ready for inference at points.

    Load with :meth:`load`; no Hydra config or training code is needed.

    Parameters
    ----------
    net : torch.nn.Module
        The network, ``(P, d) -> (P, C)``.
    coordinates : sequence of str
        Names of the ``d`` input coordinates, in the order of the points' columns (e.g. ``["x", "y"]``).
    bounds : sequence of (low, high), optional
        The domain box, one pair per coordinate; ``None`` when the file records none (then every
        finite point is accepted).
    outputs : sequence of str
        Names of the ``C`` output components (``["u"]``).
    problem : PhysicsProblem, optional
        The PDE instance the network solves (with its ``reference``), when the file records one.
    schema : dict, optional
        The checkpoint's data schema.
    metadata : dict, optional
        What the file reports (kind, task, versions, path, training summary).
    device : str or torch.device
        Where the network runs.
    chunk : int
        Points per forward pass.
    """

    def __init__(
        self,
        net: torch.nn.Module,
        coordinates: Sequence[str],
        bounds: Sequence[Sequence[float]] | None = None,
        outputs: Sequence[str] = ("u",),
        problem: Any = None,
        schema: DataSchema | None = None,
        metadata: dict[str, Any] | None = None,
        device: str | torch.device = "cpu",
        chunk: int = 16384,
    ):
        self.device = torch.device(device)
        self.net = net.to(self.device).eval()
        self.coordinates = [str(c) for c in coordinates]
        self.bounds = None if bounds is None else [(float(lo), float(hi)) for lo, hi in bounds]
        self.outputs = [str(o) for o in outputs]
        self.problem = problem
        self.schema = schema if schema is not None else DataSchema(kind="pointwise")
        self.metadata = metadata or {}
        self.chunk = int(chunk)
        if self.bounds is not None and (
            len(self.bounds) != self.dim or not all(np.isfinite([lo, hi]).all() and lo < hi for lo, hi in self.bounds)
        ):
            raise ValueError(f"bounds must be {self.dim} finite pairs (low, high) with low < high, got {self.bounds}")
        parameter = next(iter(self.net.parameters()), None)
        self.dtype = parameter.dtype if parameter is not None else torch.get_default_dtype()

    # -- loading ----------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> "PointwiseSurrogate":
        """Rebuild from a checkpoint of :class:`~surrogates.tasks.physics_informed.PhysicsInformed`.

        Raises
        ------
        CheckpointError
            When the file is missing, unreadable, not a pointwise checkpoint, or invalid (coordinates,
            box and network disagreeing included).
        """
        return cls.from_checkpoint(read_checkpoint(path), device)

    @classmethod
    def from_checkpoint(cls, checkpoint: Checkpoint, device: str | torch.device = "cpu") -> "PointwiseSurrogate":
        """:meth:`load` on a checkpoint already read by :func:`surrogates.checkpoint.read_checkpoint`.

        The coordinates and the box come from the recorded problem (``problem.coordinates``,
        ``problem.bounds()``), else from the data schema (``bounds``, else ``inputs``),
        else from the network's own ``bounds`` argument; the output names from the schema's ``targets``.
        """
        require_kind(checkpoint, "pointwise")
        path = checkpoint.path
        net = checkpoint.build_model()
        problem = checkpoint.build_problem()
        schema = checkpoint.metadata.data_schema or DataSchema(kind="pointwise")
        kwargs = getattr(net, "init_kwargs", {})
        d = int(kwargs.get("in_channels") or len(schema.bounds or schema.inputs) or 0)
        c = int(kwargs.get("out_channels") or 1)
        if problem is not None:
            coordinates, bounds = list(problem.coordinates), [tuple(b) for b in problem.bounds()]
        else:
            coordinates = list(schema.bounds or schema.inputs or [f"x{i}" for i in range(d)])
            bounds = list(schema.bounds.values()) or kwargs.get("bounds")
        outputs = list(schema.targets or (["u"] if c == 1 else [f"u{i}" for i in range(c)]))
        if len(coordinates) != d:
            raise CheckpointError(path, f"the network takes {d} coordinate(s) but the file names {coordinates}")
        if len(outputs) != c:
            raise CheckpointError(path, f"the network has {c} output(s) but the file names {outputs}")
        try:
            return cls(net, coordinates, bounds, outputs, problem, schema, checkpoint_metadata(checkpoint), device)
        except (TypeError, ValueError) as error:
            raise CheckpointError(path, f"invalid domain box: {error}") from None

    # -- description ------------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        """Number of input coordinates ``d``."""
        return len(self.coordinates)

    @property
    def domain(self) -> dict[str, tuple[float, float]] | None:
        """The box by coordinate name, ``{"x": (low, high), ...}`` (None when unknown)."""
        return None if self.bounds is None else dict(zip(self.coordinates, self.bounds))

    @property
    def pde(self) -> str | None:
        """The problem's registered name (e.g. ``"helmholtz"``)."""
        if self.problem is not None:
            return self.problem.name
        problem = self.schema.problem
        return problem.get("name") if isinstance(problem, dict) else None

    # -- checks -----------------------------------------------------------------------------------
    def check_points(self, points: Any) -> tuple[np.ndarray, bool]:
        """Points as a ``(P, d)`` array of the network's dtype, and whether one point ``(d,)`` was given.

        Raises
        ------
        ValueError
            Not real numbers (:class:`~surrogates.serve.inputs.InputError` ``invalid_array``: complex values are
            refused, not cast), a shape other than ``(P, d)`` / ``(d,)``, no points, NaN or infinite
            coordinates, points outside the domain box (see :meth:`check_domain`).
        """
        try:
            raw = np.asarray(points)
        except (TypeError, ValueError) as error:
            raise ValueError(f"points must be an array of numbers of shape (P, {self.dim}): {error}") from None
        if raw.dtype.kind not in "fiu":
            raise InputError("invalid_array", f"points have dtype {raw.dtype}; expected real numbers of shape (P, {self.dim})")
        with np.errstate(over="ignore"):  # beyond the network's dtype: infinite, refused below
            array = raw.astype(torch.empty((), dtype=self.dtype).numpy().dtype)
        single = array.ndim == 1
        if single:
            array = array[None]
        names = ", ".join(self.coordinates)
        if array.ndim != 2 or array.shape[1] != self.dim:
            raise ValueError(
                f"points of shape {tuple(np.shape(points))} do not match the model: expected (P, {self.dim}) with "
                f"columns ({names}), or ({self.dim},) for one point"
            )
        if array.shape[0] == 0:
            raise ValueError(f"no points given: expected (P, {self.dim}) with P >= 1")
        finite = np.isfinite(array).all(axis=1)
        if not finite.all():
            bad = np.flatnonzero(~finite).tolist()
            raise ValueError(f"points {bad[:10]} have NaN or infinite coordinates; nothing was predicted")
        self.check_domain(array)
        return array, single

    def check_domain(self, points: np.ndarray) -> None:
        """Refuse points ``(P, d)`` outside the domain box (up to :data:`BOUNDARY_TOLERANCE` of a side).

        Raises
        ------
        ValueError
            Naming how many points are outside, the first of them and the box.
        """
        if self.bounds is None:
            return
        box = np.asarray(self.bounds, dtype=np.float64)
        slack = BOUNDARY_TOLERANCE * np.maximum(box[:, 1] - box[:, 0], np.abs(box).max(axis=1))
        values = np.asarray(points, dtype=np.float64)
        outside = ((values < box[:, 0] - slack) | (values > box[:, 1] + slack)).any(axis=1)
        if outside.any():
            first = int(np.flatnonzero(outside)[0])
            where = ", ".join(f"{n}={v:.6g}" for n, v in zip(self.coordinates, values[first]))
            raise ValueError(
                f"{int(outside.sum())} of {len(values)} point(s) lie outside the domain the model was trained on "
                f"({self.describe_domain()}), e.g. point {first} ({where}); a coordinate network does not "
                "extrapolate meaningfully"
            )

    def describe_domain(self) -> str:
        """``"x in [-1, 1], y in [-1, 1]"`` (or ``"unknown domain"``)."""
        if self.bounds is None:
            return "unknown domain"
        return ", ".join(f"{n} in [{lo:g}, {hi:g}]" for n, (lo, hi) in zip(self.coordinates, self.bounds))

    # -- prediction -------------------------------------------------------------------------------
    @torch.no_grad()
    def predict_tensor(self, points: torch.Tensor) -> torch.Tensor:
        """Network values at checked points, in chunks of :attr:`chunk` points, without gradients.

        Parameters
        ----------
        points : torch.Tensor
            Shape ``(P, d)`` (no checks here: see :meth:`predict`).

        Returns
        -------
        torch.Tensor
            Shape ``(P, C)`` on the input's device (``C`` output components).
        """
        c = len(self.outputs)
        chunks = [
            self.net(p.to(self.device, self.dtype)).reshape(-1, c).to(points.device) for p in torch.split(points, self.chunk)
        ]
        return torch.cat(chunks)

    def predict(self, points: Any) -> np.ndarray:
        """Values of the solution at points of the domain.

        Parameters
        ----------
        points : array_like
            Shape ``(P, d)``: one row per point, columns in the order of :attr:`coordinates`; or
            ``(d,)`` for one point. Converted to the network's dtype (float32).

        Returns
        -------
        np.ndarray
            Shape ``(P,)`` (``()`` for one point); ``(P, C)`` / ``(C,)`` for networks with several
            outputs.

        Raises
        ------
        ValueError
            Wrong shape, no points, NaN or infinite coordinates, points outside the domain box.
        """
        array, single = self.check_points(points)
        values = self.predict_tensor(torch.from_numpy(np.ascontiguousarray(array))).cpu().numpy()
        if len(self.outputs) == 1:
            values = values[:, 0]
        return values[0] if single else values

    def predict_grid(self, *axes: Any) -> np.ndarray:
        """Values on the tensor grid of one 1D array of coordinates per input coordinate.

        Parameters
        ----------
        *axes : array_like
            ``d`` 1D arrays, in the order of :attr:`coordinates` (e.g. ``x (n_x,)``, ``y (n_y,)``).

        Returns
        -------
        np.ndarray
            Shape ``(n_x, n_y, ...)`` (``indexing="ij"``), plus a trailing ``C`` axis for several outputs.
        """
        if len(axes) != self.dim:
            raise ValueError(f"predict_grid takes one axis per coordinate {self.coordinates}, got {len(axes)}")
        arrays = [np.asarray(axis, dtype=np.float64) for axis in axes]
        if any(a.ndim != 1 for a in arrays):
            raise ValueError(f"every axis must be a 1D array, got shapes {[a.shape for a in arrays]}")
        mesh = np.meshgrid(*arrays, indexing="ij")
        values = self.predict(np.stack([m.ravel() for m in mesh], axis=-1))
        return values.reshape(*(len(a) for a in arrays), *values.shape[1:])

    def __repr__(self) -> str:
        return (
            f"PointwiseSurrogate({type(self.net).__name__}, pde={self.pde!r}, {self.describe_domain()}, "
            f"outputs={self.outputs}, checkpoint={self.metadata.get('checkpoint', '')!r})"
        )

"""The model registry: every checkpoint in a folder, and classical solvers, behind one interface.

Rules (see ``docs/serving.md``):

- :meth:`Registry.from_folder` scans ``models_dir`` recursively for files whose name ends with a
  suffix of :data:`LOADERS` (``.ckpt``: neural surrogates, ``.rb.h5``: reduced-basis models); hidden
  files and folders are skipped. One entry per file, named by its path relative to ``models_dir``
  without the suffix (``runs/darcy/best.ckpt`` -> ``runs/darcy/best``).
- A file that cannot be loaded (corrupt, truncated, foreign) becomes an *unavailable* entry that
  carries the error; it is logged at start-up and listed by ``GET /health`` and ``GET /v1/models``,
  and the other models are served.
- Classical solvers are PDE objects (``_target_`` nodes, the same as ``conf/pde/*.yaml``) registered
  under a name; their ``solve`` answers the same requests as the surrogates of that PDE.

An entry turns request arrays into one float32 batch ``x`` (:meth:`ModelEntry.prepare`), and its
``runner`` maps ``x`` to output arrays (called in a worker thread, possibly on a micro-batch).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from surrogates.serve.errors import ServiceError, unprocessable

if TYPE_CHECKING:  # torch is imported only when a checkpoint is loaded
    from surrogates.serve.rollout import RolloutSurrogate

log = logging.getLogger("surrogates.serve")

Runner = Callable[[np.ndarray], tuple[dict[str, np.ndarray], dict[str, Any]]]
"""``x (B, C_in, *spatial)`` (or ``(B, C_in)`` without fields) -> (outputs ``name -> (B, *dims)``, info)."""

RolloutRunner = Callable[[np.ndarray, int, int], tuple[dict[str, np.ndarray], dict[str, Any]]]
"""``(x (B, C_in, *spatial), steps, seed)`` -> (outputs ``name -> (B, steps, *dims)``, info): a model that
rolls out itself (one-step models such as PDE-Refiner), with the seed of its noise."""


@dataclass(frozen=True)
class Variable:
    """An input or output variable of a model: its name and the dims of one sample."""

    name: str
    dims: tuple[str, ...]
    units: str | None = None
    long_name: str | None = None

    def info(self) -> dict[str, Any]:
        return {"name": self.name, "dims": list(self.dims), "units": self.units, "long_name": self.long_name}


@dataclass(frozen=True)
class ResolutionRule:
    """Which grid sizes a model takes; :meth:`check` raises a 422 naming the rule a grid breaks.

    ``policy``: ``"any"`` (at least ``min_size`` points per dim), ``"fixed"`` (exactly ``trained``),
    ``"multiple_of"`` (sizes divisible by ``multiple``), ``"none"`` (no field inputs).
    """

    policy: str = "any"
    trained: tuple[int, ...] | None = None
    min_size: int = 1
    multiple: int | None = None
    equal_sizes: bool = False

    def check(self, model: str, shape: tuple[int, ...]) -> None:
        def refuse(why: str) -> ServiceError:
            return unprocessable("wrong_resolution", f"model {model!r} cannot take a grid of {_shape(shape)}: {why}")

        if self.policy == "none":
            return
        if self.policy == "fixed" and self.trained is not None and tuple(shape) != tuple(self.trained):
            raise refuse(f"it only takes its own grid {_shape(self.trained)}")
        if min(shape, default=self.min_size) < self.min_size:
            raise refuse(f"every spatial dim needs at least {self.min_size} points")
        if self.policy == "multiple_of" and self.multiple and any(n % self.multiple for n in shape):
            raise refuse(f"every spatial size must be a multiple of {self.multiple}")
        if self.equal_sizes and len(set(shape)) > 1:
            raise refuse("all spatial dims must have the same size (a square grid)")

    def info(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "trained": list(self.trained) if self.trained is not None else None,
            "min_size": self.min_size,
            "multiple": self.multiple,
            "equal_sizes": self.equal_sizes,
        }

    @classmethod
    def from_record(cls, record: Any, trained: tuple[int, ...] | None) -> "ResolutionRule":
        """A rule recorded by a model or checkpoint: ``"fixed"``, ``"any"``, or a dict of the fields."""
        if isinstance(record, str):
            return cls(policy=record, trained=trained)
        if isinstance(record, Mapping):
            fields = {k: record[k] for k in ("policy", "min_size", "multiple", "equal_sizes") if k in record}
            if "multiple" in fields and "policy" not in fields:
                fields["policy"] = "multiple_of"
            return cls(trained=tuple(record.get("trained") or trained or ()) or None, **fields)
        return cls(trained=trained)


@dataclass
class Prepared:
    """Request arrays as one model batch."""

    x: np.ndarray
    single: bool
    n: int
    spatial_shape: tuple[int, ...]


@dataclass
class ModelEntry:
    """One servable model (ready) or a file that failed to load (unavailable)."""

    name: str
    kind: str  # "surrogate", "solver", "reduced_basis"
    source: str
    status: str = "ready"
    error: str | None = None
    pde: str | None = None
    description: str = ""
    inputs: list[Variable] = field(default_factory=list)
    outputs: list[Variable] = field(default_factory=list)
    spatial_dims: list[str] = field(default_factory=list)
    resolution: ResolutionRule = field(default_factory=ResolutionRule)
    batchable: bool = False
    device: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    model_config: dict[str, Any] | None = None
    ignored_inputs: tuple[str, ...] = ()
    runner: Runner | None = None
    rollout_runner: RolloutRunner | None = None
    stochastic: bool = False

    @classmethod
    def unavailable(cls, name: str, kind: str, source: str, error: str) -> "ModelEntry":
        return cls(name=name, kind=kind, source=source, status="unavailable", error=error)

    @property
    def ready(self) -> bool:
        return self.status == "ready" and self.runner is not None

    @property
    def rollout(self) -> bool:
        """Whether ``steps`` is accepted: the model rolls out itself, or its outputs can be fed back as its
        inputs (same variables, all of them fields on the same dims)."""
        if self.ready and self.rollout_runner is not None:
            return True
        names_in, names_out = [v.name for v in self.inputs], [v.name for v in self.outputs]
        return (
            self.ready
            and bool(names_in)
            and names_in == names_out
            and all(v.dims == tuple(self.spatial_dims) for v in self.inputs + self.outputs)
        )

    def info(self, batching: bool) -> dict[str, Any]:
        """The ``GET /v1/models`` record."""
        return {
            "name": self.name,
            "kind": self.kind,
            "status": self.status,
            "error": self.error,
            "source": self.source,
            "pde": self.pde,
            "description": self.description,
            "inputs": [v.info() for v in self.inputs],
            "outputs": [v.info() for v in self.outputs],
            "spatial_dims": list(self.spatial_dims),
            "resolution": self.resolution.info() if self.ready else None,
            "rollout": self.rollout,
            "stochastic": self.stochastic,
            "batching": bool(batching and self.batchable and self.ready),
            "device": self.device,
            "metrics": self.metrics,
            "model": self.model_config,
        }

    # -- requests ---------------------------------------------------------------------------------
    def prepare(self, arrays: Mapping[str, np.ndarray], max_elements: int) -> Prepared:
        """Check request arrays against the model and stack them as channels: ``(n, C_in, *spatial)``.

        Raises
        ------
        ServiceError
            422 for unknown or missing variables, wrong shapes, disagreeing sample counts or grids,
            a grid the model cannot take, NaN or infinite values; 413 when the batch is too large.
        """
        names = [v.name for v in self.inputs]
        unknown = sorted(set(arrays) - set(names) - set(self.ignored_inputs))
        if unknown:
            raise unprocessable("unknown_input", f"model {self.name!r} has no input(s) {unknown}; its inputs are {names}")
        missing = [name for name in names if name not in arrays]
        if missing:
            raise unprocessable("missing_input", f"model {self.name!r} needs input(s) {missing}; its inputs are {names}")
        singles, counts, sizes = set(), set(), {}
        # a number for a scalar input (e.g. a time step) goes with every sample when fields carry the sample dim
        broadcast = {v.name for v in self.inputs if not v.dims and np.ndim(arrays[v.name]) == 0}
        if len(broadcast) == len(self.inputs) or not any(v.dims for v in self.inputs):
            broadcast = set()
        for var in self.inputs:
            array = arrays[var.name]
            d = len(var.dims)
            if var.name in broadcast:
                continue
            if array.ndim not in (d, d + 1):
                layout = ", ".join(var.dims)
                raise unprocessable(
                    "wrong_shape",
                    f"input {var.name!r} has shape {_shape(array.shape)}; model {self.name!r} expects "
                    f"(n{', ' + layout if layout else ''}) for n samples or ({layout}) for one sample",
                )
            single = array.ndim == d
            singles.add(single)
            counts.add(1 if single else array.shape[0])
            for dim, size in zip(var.dims, array.shape[array.ndim - d :]):
                sizes.setdefault(dim, set()).add(size)
        if len(singles) > 1:
            raise unprocessable("wrong_shape", "send every input with a leading sample dim, or none of them (one sample)")
        if len(counts) > 1:
            raise unprocessable("wrong_shape", f"inputs disagree on the number of samples: {sorted(counts)}")
        n = counts.pop()
        if n == 0:
            raise unprocessable("wrong_shape", "the request holds no samples (a leading dim of size 0)")
        disagreeing = {dim: sorted(values) for dim, values in sizes.items() if len(values) > 1}
        if disagreeing:
            raise unprocessable("wrong_shape", f"inputs disagree on grid sizes: {disagreeing}")
        spatial_shape = tuple(sizes[dim].copy().pop() for dim in self.spatial_dims if dim in sizes)
        if any(var.dims for var in self.inputs):
            self.resolution.check(self.name, spatial_shape)
        total = n * len(self.inputs) * math.prod(spatial_shape)
        if total > max_elements:
            raise ServiceError(
                413, "too_many_values", f"the request holds {total} input values; the limit is {max_elements} (max_elements)"
            )
        for var in self.inputs:
            array = arrays[var.name]
            finite = np.isfinite(array)
            if not finite.all():
                flat = finite.reshape(1 if array.ndim == len(var.dims) else array.shape[0], -1)
                bad = np.flatnonzero(~flat.all(axis=1)).tolist()
                raise unprocessable(
                    "non_finite",
                    f"input {var.name!r} contains NaN or infinite values (samples {bad[:10]}; values beyond "
                    "float32's range, about 3.4e38, count as infinite); nothing was predicted",
                )
        x = np.empty((n, len(self.inputs), *spatial_shape), dtype=np.float32)
        for k, var in enumerate(self.inputs):
            array = np.broadcast_to(arrays[var.name], (n,)) if var.name in broadcast else arrays[var.name]
            per_sample = array.shape[array.ndim - len(var.dims) :]  # () for a scalar
            # fields fill their channel; a scalar per sample becomes a constant channel
            x[:, k] = array.reshape((n, *per_sample, *(1,) * (len(spatial_shape) - len(per_sample))))
        return Prepared(x, single, n, spatial_shape)


# -- loaders ----------------------------------------------------------------------------------------
def load_checkpoint(path: Path, name: str, device: str) -> ModelEntry:
    """A neural surrogate from a training checkpoint (``*.ckpt``), through :class:`~surrogates.serve.surrogate.Surrogate`
    (one-step models of rollouts: :func:`load_rollout_checkpoint`)."""
    import torch

    from surrogates.serve.rollout import RolloutSurrogate, load_surrogate

    surrogate = load_surrogate(path, device=device)  # reads the file once, whichever kind of model it holds
    if isinstance(surrogate, RolloutSurrogate):
        return load_rollout_checkpoint(path, name, device, surrogate)
    from surrogates.serve.pointwise import PointwiseSurrogate  # physics-informed coordinate networks (PIG, PINN)
    if isinstance(surrogate, PointwiseSurrogate):
        return load_pointwise_checkpoint(path, name, device, surrogate)
    schema = surrogate.schema or {}
    spatial = list(surrogate.spatial_dims)
    stored = schema.get("variables") or {}

    def dims_of(var: str, time_index: Any) -> tuple[str, ...]:
        if var not in stored:
            return tuple(spatial)
        dims = [d for d in stored[var] if d != "sample"]
        if time_index is not None and "time" in dims and "time" not in spatial:
            dims.remove("time")
        return tuple(dims)

    kwargs = surrogate.model.init_kwargs
    input_names = surrogate.inputs or [f"input_{i}" for i in range(int(kwargs.get("in_channels", 1)))]
    target_names = surrogate.targets or [f"output_{i}" for i in range(int(kwargs.get("out_channels", 1)))]
    inputs = [Variable(v, dims_of(v, schema.get("input_time"))) for v in input_names]
    outputs = [Variable(v, dims_of(v, schema.get("target_time"))) for v in target_names]
    for var in inputs + outputs:
        if var.dims not in ((), tuple(spatial)):
            raise ValueError(f"variable {var.name!r} has dims {var.dims}; the service serves fields on {tuple(spatial)} or scalars")
    if not any(var.dims for var in inputs):
        raise ValueError("the model takes no field input; the service cannot tell the output grid")
    trained = tuple(int(n) for n in schema.get("spatial_shape") or ()) or None
    record = surrogate.metadata.get("serving", {}).get("resolution") if isinstance(surrogate.metadata.get("serving"), dict) else None
    record = record if record is not None else getattr(surrogate.model, "resolution_rule", None)
    resolution = ResolutionRule.from_record(record, trained)

    def run(x: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        y = surrogate.predict_tensor(torch.from_numpy(x)).numpy()
        return {name: y[:, k] for k, name in enumerate(target_names)}, {}

    return ModelEntry(
        name=name,
        kind="surrogate",
        source=str(path),
        pde=schema.get("pde") or None,
        description=f"{type(surrogate.model).__name__} checkpoint",
        inputs=inputs,
        outputs=outputs,
        spatial_dims=spatial,
        resolution=resolution,
        batchable=True,
        device=str(surrogate.device),
        metrics=_training_metrics(path, surrogate.metadata),
        model_config=surrogate.model.init_config(),
        runner=run,
    )


def load_rollout_checkpoint(path: Path, name: str, device: str, surrogate: RolloutSurrogate | None = None) -> ModelEntry:
    """A one-step model (PDE-Refiner, MSE U-Net) through :class:`~surrogates.serve.rollout.RolloutSurrogate`.

    Inputs: the state fields, then the conditioning parameters (e.g. ``dt``, ``dx``) as scalars per
    sample; outputs: the next state, or ``steps`` states with a rollout. Every request, rollout or
    not, is one call of :meth:`RolloutSurrogate.rollout_tensor` with the request's seed, so answers
    equal ``RolloutSurrogate.rollout(u0, steps, seed=seed, ...)``; such requests are not
    micro-batched (a refiner's noise would then depend on the other requests of its batch).
    ``surrogate``: the file's :class:`RolloutSurrogate` when the caller has loaded it already.
    """
    import torch

    from surrogates.serve.rollout import RolloutSurrogate

    surrogate = surrogate or RolloutSurrogate.load(path, device=device)
    schema = surrogate.schema
    dim = surrogate.model.unet.dim
    spatial = list(schema.get("spatial_dims") or ["x", "y", "z"][:dim])
    state = list(schema.get("state") or [f"u_{i}" for i in range(surrogate.model.in_channels)])
    conditioning = list(surrogate.conditioning)
    if len(spatial) != dim or len(state) != surrogate.model.in_channels:
        raise ValueError(f"the checkpoint's schema (state {state} on {spatial}) does not match its {dim}D model "
                         f"with {surrogate.model.in_channels} state channel(s)")
    n_state = len(state)

    def roll(x: np.ndarray, steps: int, seed: int) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        states = torch.from_numpy(np.ascontiguousarray(x[:, :n_state]))
        params = None
        if conditioning:  # scalars arrive as constant channels: read one point of each
            params = torch.from_numpy(x[:, n_state:].reshape(len(x), len(conditioning), -1)[:, :, 0].copy())
        out = surrogate.rollout_tensor(states, steps, params, seed).cpu().numpy()  # (B, steps, C, *spatial)
        info = {"refinement_steps": surrogate.refinement_steps, "evaluations_per_step": surrogate.evaluations_per_step}
        if surrogate.stochastic:
            info["seed"] = int(seed)
        return {var: out[:, :, k] for k, var in enumerate(state)}, info

    def run(x: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        outputs, info = roll(x, 1, 0)
        return {var: value[:, 0] for var, value in outputs.items()}, info

    kind = "PDE-Refiner" if surrogate.stochastic else "MSE-trained one-step model"
    return ModelEntry(
        name=name,
        kind="surrogate",
        source=str(path),
        pde=schema.get("pde") or None,
        description=(
            f"{kind} (K={surrogate.refinement_steps}, {surrogate.evaluations_per_step} network evaluation(s) per step); "
            f"conditioned on {conditioning}; send `steps` for a rollout"
            + ("" if not surrogate.stochastic else " and `seed` for its refinement noise")
        ),
        inputs=[Variable(v, tuple(spatial)) for v in state]
        + [Variable(p, (), long_name=f"trajectory parameter {p} (physical units)") for p in conditioning],
        outputs=[Variable(v, tuple(spatial)) for v in state],
        spatial_dims=spatial,
        resolution=ResolutionRule(policy="any", trained=None, min_size=2),
        batchable=False,
        device=str(surrogate.device),
        metrics=_training_metrics(path, surrogate.metadata),
        model_config=surrogate.model.init_config(),
        runner=run,
        rollout_runner=roll,
        stochastic=surrogate.stochastic,
    )


@dataclass
class PointwiseEntry(ModelEntry):
    """A pointwise model (PIG, PINN): one scalar input per coordinate, so that ``n`` samples are ``n`` query
    points; :meth:`prepare` also refuses points outside the trained domain (422 ``outside_domain``)."""

    domain: dict[str, list[float]] | None = None
    check_domain: Callable[[np.ndarray], None] | None = None

    def prepare(self, arrays: Mapping[str, np.ndarray], max_elements: int) -> Prepared:
        prepared = super().prepare(arrays, max_elements)
        if self.check_domain is not None:
            try:
                self.check_domain(prepared.x)
            except ValueError as error:
                raise unprocessable("outside_domain", f"model {self.name!r}: {error}") from None
        return prepared

    def info(self, batching: bool) -> dict[str, Any]:
        return {**super().info(batching), "domain": self.domain}


def load_pointwise_checkpoint(path: Path, name: str, device: str, surrogate: Any = None) -> PointwiseEntry:
    """A physics-informed coordinate network (PIG, PINN) through :class:`~surrogates.serve.pointwise.PointwiseSurrogate`.

    Inputs: one scalar per coordinate (``x``, ``y`` ...), so a request of ``n`` samples asks for ``n``
    points; outputs: the solution ``u`` at them. Points are checked like ``PointwiseSurrogate.predict``
    does (NaN, the domain box), and requests are micro-batched along the points.
    ``surrogate``: the file's ``PointwiseSurrogate`` when the caller has loaded it already.
    """
    import torch

    from surrogates.serve.pointwise import PointwiseSurrogate

    surrogate = surrogate or PointwiseSurrogate.load(path, device=device)
    names = list(surrogate.outputs)

    def run(x: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, Any]]:  # x: (B, d) points, checked by prepare
        y = surrogate.predict_tensor(torch.from_numpy(np.ascontiguousarray(x))).cpu().numpy()
        return {var: y[:, k] for k, var in enumerate(names)}, {}

    domain = surrogate.domain
    return PointwiseEntry(
        name=name,
        kind="pointwise",
        source=str(path),
        pde=surrogate.pde,
        description=(
            f"{type(surrogate.net).__name__} solution of one {surrogate.pde or 'PDE'} instance on {surrogate.describe_domain()}: "
            f"send the points' coordinates {surrogate.coordinates}, one array each; points outside the box are refused"
        ),
        inputs=[Variable(c, (), long_name=f"coordinate {c} of the query points") for c in surrogate.coordinates],
        outputs=[Variable(v, (), long_name=f"{v} at the query points") for v in names],
        spatial_dims=[],
        resolution=ResolutionRule(policy="none"),
        batchable=True,
        device=str(surrogate.device),
        metrics=_training_metrics(path, surrogate.metadata),
        model_config=surrogate.net.init_config() if hasattr(surrogate.net, "init_config") else None,
        runner=run,
        domain=None if domain is None else {c: [lo, hi] for c, (lo, hi) in domain.items()},
        check_domain=surrogate.check_domain,
    )


def load_reduced_model(path: Path, name: str, device: str) -> ModelEntry:
    """A reduced-basis model (``*.rb.h5``): parameters in, the field ``u`` and its error bound out."""
    from surrogates.solvers.reduced_basis.model import ReducedModel

    model = ReducedModel.load(path)
    grid = model.layout.grid_shape
    if grid is None:
        raise ValueError("the reduced model lives on an unstructured mesh; the service serves grid fields")
    spatial = ["x", "y", "z"][: len(grid)]
    params = list(model.parameter_space.names)
    recorded = [v for v in model.metadata.get("dataset_inputs") or [] if v not in params]
    space = model.parameter_space

    def run(x: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        solution = model.solve(x.astype(np.float64))
        fields = model.fields(solution.coefficients).astype(np.float32)
        return {"u": fields, "error_bound": solution.bound.astype(np.float32)}, {}

    return ModelEntry(
        name=name,
        kind="reduced_basis",
        source=str(path),
        pde=model.metadata.get("pde") or None,
        description=(
            f"reduced basis (N={model.size}) with EIM; parameters {params} in "
            f"[{list(space.lower)}, {list(space.upper)}]; error_bound >= ||u_h - u_N||_X"
        ),
        inputs=[Variable(p, (), long_name=f"parameter {p}") for p in params],
        outputs=[Variable("u", tuple(spatial), long_name="reduced-basis solution"), Variable("error_bound", (), long_name="a posteriori error bound")],
        spatial_dims=spatial,
        resolution=ResolutionRule(policy="none", trained=tuple(grid)),
        batchable=True,
        device="cpu",
        metrics={k: v for k, v in model.metadata.items() if isinstance(v, (int, float, str))},
        ignored_inputs=tuple(recorded),
        runner=run,
    )


LOADERS: dict[str, Callable[[Path, str, str], ModelEntry]] = {
    ".rb.h5": load_reduced_model,
    ".ckpt": load_checkpoint,
}
"""File suffix -> loader ``(path, name, device) -> ModelEntry``; longer suffixes are matched first.
Register another kind of model file by adding its suffix here."""

_KINDS = {".rb.h5": "reduced_basis", ".ckpt": "surrogate"}


def solver_entry(name: str, pde_config: Any, description: str = "") -> ModelEntry:
    """A PDE's reference solver as a model: ``pde_config`` is a ``_target_`` node (as in ``conf/pde/``) or a PDE.

    The solver takes the PDE's input variables and answers its targets. When the PDE has a
    ``resolution`` argument the solver takes any square grid (a PDE object per grid size is built
    from the node); otherwise only the configured grid.
    """
    pde = _instantiate(pde_config)
    variables = pde.variables()
    inputs = [Variable(v, tuple(variables[v].dims), variables[v].units, variables[v].long_name) for v in pde.inputs]
    outputs = [Variable(v, tuple(variables[v].dims), variables[v].units, variables[v].long_name) for v in pde.targets]
    field_dims = {var.dims for var in inputs + outputs if var.dims}
    if len(field_dims) != 1 or "time" in next(iter(field_dims)):
        raise ValueError(f"the service serves solvers of stationary PDEs with fields on one grid; {pde.name!r} has dims {sorted(field_dims)}")
    spatial = list(next(iter(field_dims)))
    coords = pde.coords()
    trained = tuple(len(coords[d].values) for d in spatial)
    configurable = not _is_object(pde_config) and "resolution" in pde_config and hasattr(pde, "resolution")
    resolution = (
        ResolutionRule(policy="any", trained=trained, min_size=3, equal_sizes=True)
        if configurable
        else ResolutionRule(policy="fixed", trained=trained)
    )
    pdes = {trained[0]: pde}

    def pde_for(shape: tuple[int, ...]) -> Any:
        if shape[0] not in pdes:
            if len(pdes) >= 8:  # a few grids stay built
                pdes.pop(next(k for k in pdes if k != trained[0]))
            pdes[shape[0]] = _instantiate(pde_config, resolution=shape[0])
        return pdes[shape[0]]

    def run(x: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        problem = pde_for(tuple(x.shape[2:]))
        request = {}
        for k, var in enumerate(inputs):
            channel = x[:, k].astype(np.float64)
            request[var.name] = channel if var.dims else channel.reshape(len(x), -1)[:, 0]
        solution, report = problem.solve(request)
        out = {var.name: np.asarray(solution[var.name], dtype=np.float32) for var in outputs}
        return out, {"solver": {**report.summary(), "iterations": list(report.iterations), "residuals": list(report.residuals)}}

    target = pde_config.get("_target_") if not _is_object(pde_config) else f"{type(pde).__module__}.{type(pde).__qualname__}"
    return ModelEntry(
        name=name,
        kind="solver",
        source=str(target),
        pde=pde.name,
        description=description or f"reference solver of {pde.name!r} ({target})",
        inputs=inputs,
        outputs=outputs,
        spatial_dims=spatial,
        resolution=resolution,
        batchable=False,
        device="cpu",
        model_config=_plain(pde_config) if not _is_object(pde_config) else None,
        runner=run,
    )


class Registry:
    """Models by name. Build with :meth:`from_folder`; lookups with :meth:`get`."""

    def __init__(self, entries: list[ModelEntry] | None = None):
        self.entries: dict[str, ModelEntry] = {}
        for entry in entries or []:
            self.add(entry)

    def add(self, entry: ModelEntry) -> ModelEntry:
        if entry.name in self.entries:  # the first one keeps the name; the other is listed as unavailable
            other = self.entries[entry.name]
            entry = ModelEntry.unavailable(
                f"{entry.name} (duplicate)", entry.kind, entry.source,
                f"model name {entry.name!r} is already used by {other.source}; rename the file or the solver",
            )
            log.error("model %s: %s", entry.name, entry.error)
        self.entries[entry.name] = entry
        return entry

    def get(self, name: str) -> ModelEntry:
        """The entry called ``name`` (404 when there is none)."""
        entry = self.entries.get(name)
        if entry is None:
            known = sorted(self.entries)
            raise ServiceError(404, "unknown_model", f"unknown model {name!r}; known models: {known}")
        return entry

    @property
    def ready(self) -> list[ModelEntry]:
        return [e for e in self.entries.values() if e.ready]

    @property
    def unavailable(self) -> list[ModelEntry]:
        return [e for e in self.entries.values() if not e.ready]

    @classmethod
    def from_folder(
        cls,
        models_dir: str | Path | None,
        device: str = "cpu",
        solvers: Mapping[str, Any] | None = None,
    ) -> "Registry":
        """Load every model file under ``models_dir`` and the configured solvers.

        Parameters
        ----------
        models_dir
            Folder scanned recursively (``None``: solvers only). A missing folder raises ``FileNotFoundError``.
        device
            ``"cpu"``, ``"cuda"``, ``"cuda:1"`` ... or ``"auto"`` (CUDA when available).
        solvers
            Name -> ``{"pde": <_target_ node>, "description": str}`` (or the node itself).
        """
        registry = cls()
        device = _resolve_device(device)
        if models_dir is not None:
            root = Path(models_dir)
            if not root.is_dir():
                raise FileNotFoundError(f"models_dir {root} is not a folder")
            files = scan(root)
            if not files:
                log.warning("no model files (%s) under %s", ", ".join(LOADERS), root)
            for path, suffix in files:
                name = path.relative_to(root).as_posix()[: -len(suffix)]
                try:
                    entry = LOADERS[suffix](path, name, device)
                    log.info("model %s: loaded %s", name, path)
                except Exception as error:  # one bad file must not stop the others
                    entry = ModelEntry.unavailable(name, _KINDS.get(suffix, "surrogate"), str(path), f"{type(error).__name__}: {error}")
                    log.error("model %s: cannot load %s: %s", name, path, entry.error)
                registry.add(entry)
        for name, node in (solvers or {}).items():
            if node is None:
                continue
            config = node.get("pde", node) if isinstance(node, Mapping) else node
            description = node.get("description", "") if isinstance(node, Mapping) and "pde" in node else ""
            try:
                entry = solver_entry(str(name), config, description or "")
                log.info("solver %s: %s", name, entry.source)
            except Exception as error:
                entry = ModelEntry.unavailable(str(name), "solver", str(_target_of(config)), f"{type(error).__name__}: {error}")
                log.error("solver %s: cannot build it: %s", name, entry.error)
            registry.add(entry)
        return registry


def scan(root: Path) -> list[tuple[Path, str]]:
    """Model files under ``root`` (sorted), each with the suffix that selects its loader."""
    found = []
    suffixes = sorted(LOADERS, key=len, reverse=True)
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts) or not path.is_file():
            continue
        suffix = next((s for s in suffixes if path.name.endswith(s) and len(path.name) > len(s)), None)
        if suffix is not None:
            found.append((path, suffix))
    return found


# -- helpers ----------------------------------------------------------------------------------------
def _training_metrics(path: Path, metadata: Mapping[str, Any]) -> dict[str, Any]:
    """What the checkpoint records (epoch, step, best monitored value), plus ``metrics.json`` of its run."""
    metrics: dict[str, Any] = dict(metadata.get("training") or {})
    for candidate in (path.with_name(path.name[: -len(".ckpt")] + ".metrics.json"), path.parent / "metrics.json", path.parent.parent / "metrics.json"):
        if candidate.is_file():
            try:
                summary = json.loads(candidate.read_text())
            except (OSError, ValueError):
                continue
            values = summary.get("metrics", summary) if isinstance(summary, dict) else None
            if isinstance(values, dict):
                metrics["run"] = {k: v for k, v in values.items() if isinstance(v, (int, float, str))}
                metrics["run_file"] = str(candidate)
            break
    if metadata.get("package_version"):
        metrics["package_version"] = metadata["package_version"]
    return metrics


def _resolve_device(device: str) -> str:
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return str(device)


def _is_object(config: Any) -> bool:
    return not isinstance(config, Mapping) and not hasattr(config, "_metadata")


def _target_of(config: Any) -> Any:
    return config.get("_target_", "?") if isinstance(config, Mapping) else type(config).__name__


def _instantiate(config: Any, **overrides: Any) -> Any:
    if _is_object(config):
        return config
    from hydra.utils import instantiate

    return instantiate(config, **overrides)


def _plain(config: Any) -> Any:
    try:
        from omegaconf import DictConfig, OmegaConf

        if isinstance(config, DictConfig):
            return OmegaConf.to_container(config, resolve=True)
    except ImportError:  # pragma: no cover
        pass
    return dict(config)


def _shape(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(int(n)) for n in shape) + ")" if len(shape) != 1 else f"({int(shape[0])},)"

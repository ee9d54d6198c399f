"""Hard-constraint mixture of experts: partition, the single-constraint limit, exactness of the
initial condition, the solve, gradients and the checkpoint round trip."""

from __future__ import annotations

import functools
import math

import lightning as L
import pytest
import torch
from torch import nn

from surrogates.checkpoint import build_model
from surrogates.models.hc_moe import HardConstraintMoE, assemble, expert_labels, partition
from surrogates.nn.least_squares import levenberg_marquardt
from surrogates.pdes.navier_stokes import VorticityResidual

DS = {"pde": "diffusion_sorption", "pde_params": {"final_time": 500.0}, "w_init": 1.0}
NS = {"pde": "navier_stokes", "pde_params": {"final_time": 2.0}, "ic_mode": "exact"}
TINY = {"width": 8, "modes": 4, "n_layers": 2, "projection_channels": 8, "n_basis": 6}


def _ds_input(batch: int = 2, nt: int = 9, nx: int = 16) -> torch.Tensor:
    c = torch.linspace(0.05, 0.15, batch)
    return c.view(batch, 1, 1, 1).expand(batch, 1, nt, nx).contiguous()


def _ns_input(batch: int = 2, nt: int = 5, n: int = 8, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    w0 = torch.randn(batch, n, n, generator=g)
    w0 = w0 - w0.mean(dim=(1, 2), keepdim=True)
    return w0[:, None, None].expand(batch, 1, nt, n, n).contiguous()


class FixedBasis(nn.Module):
    """A stand-in backbone returning given basis functions ``(N, T, *spatial)`` for every sample."""

    def __init__(self, basis: torch.Tensor):
        super().__init__()
        self.register_buffer("basis", basis)
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * self.basis.expand(x.shape[0], *self.basis.shape).to(x.dtype)


# -- partition ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(("shape", "experts"), [((9, 16), (1, 4)), ((7, 10), (2, 3)), ((5, 8, 6), (1, 2, 2)), ((4, 9, 7), (2, 3, 2))])
def test_partition_then_assembly_is_the_identity(shape, experts):
    labels = expert_labels(shape, experts)
    assert labels.shape == shape and set(labels.unique().tolist()) == set(range(math.prod(experts)))
    field = torch.randn(3, 2, *shape)
    parts = partition(field, labels)
    assert len(parts) == math.prod(experts)
    assert sum(p.shape[-1] for p in parts) == math.prod(shape)
    assert torch.equal(assemble(parts, labels), field)


def test_uniform_partition_pieces_differ_by_at_most_one_point():
    labels = expert_labels((10, 7), (3, 2))
    sizes = torch.bincount(labels.flatten())
    assert sizes.numel() == 6 and int(sizes.max() - sizes.min()) <= 10 // 3 + 7 // 2 + 1
    # each piece is a box: rows of one expert are contiguous along each axis
    for k in range(6):
        rows, cols = (labels == k).nonzero().unbind(-1)
        assert (labels[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1] == k).all()


def test_partition_rejects_more_experts_than_points():
    with pytest.raises(ValueError, match="cannot cut"):
        expert_labels((4, 3), (1, 5))


# -- construction ------------------------------------------------------------------------------------
def test_shapes_records_and_rebuild():
    model = HardConstraintMoE(**DS, experts=[1, 4], **TINY)
    assert model.n_experts == 4 and model.dim == 2
    x = _ds_input()
    model.eval()
    out = model.solve(x)
    assert out.solution.shape == (2, 1, 9, 16) and out.solution.dtype == torch.float64
    assert out.weights.shape == (2, 4, 6) and out.iterations.shape == (2, 4)
    assert model(x).dtype == torch.float32
    rebuilt = build_model(model.init_config())
    rebuilt.load_state_dict(model.state_dict())
    rebuilt.eval()
    torch.testing.assert_close(rebuilt(x), model(x))


def test_evaluation_is_reproducible_and_training_samples_new_points():
    model = HardConstraintMoE(**DS, experts=[1, 2], n_points=40, **TINY)
    x = _ds_input()
    model.eval()
    assert torch.equal(model.solve(x).points, model.solve(x).points)
    model.train()
    assert not torch.equal(model.solve(x).points, model.solve(x).points)


def test_a_prediction_does_not_depend_on_the_batch_it_is_in():
    """Evaluation points are shared by the samples of a batch: a sample gets the same points alone, first or
    last in a batch, so its prediction is the same (the service batches unrelated requests together)."""
    torch.manual_seed(0)
    model = HardConstraintMoE(**DS, experts=[1, 4], n_points=40, ftol=1e-15, xtol=1e-15, gtol=1e-15, max_iter=500,
                              **TINY).double().eval()
    x = _ds_input(batch=3).double()
    with torch.no_grad():
        batched = model.solve(x)
        alone = model.solve(x[1:2])
        reversed_ = model.solve(x.flip(0))
    assert torch.equal(batched.points, alone.points.expand_as(batched.points))
    assert torch.equal(reversed_.points, batched.points)
    # float64 throughout and solves run to round-off (tolerances 1e-15): what remains is float64 round-off of
    # kernels that block differently for other batch sizes, amplified by the least-squares conditioning (far
    # below 1e6 for this basis); the points drawn per sample differed by 2 % of the solution
    scale = batched.solution.abs().max()
    assert (alone.solution[0] - batched.solution[1]).abs().max() <= 1e-9 * scale
    assert (reversed_.solution.flip(0) - batched.solution).abs().max() <= 1e-9 * scale


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"pde": "heat"}, "pde must be"),
        ({"constraint": "medium"}, "constraint must be"),
        ({"ic_mode": "nearly"}, "ic_mode must be"),
        ({"out_channels": 2}, "out_channels must be 1"),
        ({"experts": [4]}, "experts needs 2"),
        ({"ridge": float("nan")}, "ridge must be a finite number"),
        ({"ftol": -1.0}, r"ftol must be in \[0, inf\]"),
        ({"w_init": float("inf")}, "w_init must be a finite number"),
        ({"max_iter": 10**9}, r"max_iter must be in \[0, 10000\]"),
        ({"padding": float("nan")}, "padding must be a finite number"),
        ({"pde_params": {"final_time": float("nan")}}, "final_time must be a finite number"),
        ({"pde_params": {"D": float("inf")}}, "D must be a finite number"),
    ],
)
def test_invalid_arguments_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        HardConstraintMoE(**{**DS, **TINY, **kwargs})


def test_an_expert_without_pde_points_is_refused_by_name():
    """With as many time pieces as times, expert 0 owns only the initial time: no PDE row can be sampled in it."""
    model = HardConstraintMoE(**DS, experts=[5, 1], **TINY).eval()
    with pytest.raises(ValueError, match=r"experts \[0\] of the partition \[5, 1\] of the grid \[5, 16\] hold no PDE"):
        model(_ds_input(nt=5))


# -- the single constraint is the case K = 1 ---------------------------------------------------------
def test_one_expert_equals_the_single_hard_constraint_solved_directly():
    torch.manual_seed(0)
    model = HardConstraintMoE(**DS, experts=[1, 1], n_points=60, ic_weight=2.0, boundary_weight=3.0, **TINY).double()
    model.eval()
    x = _ds_input().double()
    out = model.solve(x)

    # the global problem written out directly: PDE rows at the sampled points and at the boundary cells,
    # initial-condition rows at every initial point, ridge rows
    physics = model.physics
    basis = model.backbone(model.input_normalizer.encode(x)).double()  # (B, N, T, X)
    B, N, T, X = basis.shape
    terms = physics.linear_terms(basis)
    consts = physics.constant_terms((T, X), torch.float64)
    boundary = physics.boundary_mask((T, X)).clone()
    boundary[0] = False
    boundary_idx = boundary.flatten().nonzero().squeeze(-1)
    points = out.points[:, 0]
    m = points.shape[-1]

    def residual(w, pts):
        rows = []
        for idx, weight in ((pts, 1.0 / math.sqrt(m)), (boundary_idx.expand(B, -1), 3.0 / math.sqrt(boundary_idx.numel()))):
            vals = {k: torch.einsum("bng,bn->bg", terms[k].flatten(2), w).gather(1, idx) for k in physics.term_names}
            for k, c in consts.items():
                vals[k] = vals.get(k, 0.0) + c.flatten()[idx]
            rows.append(weight * physics.pointwise(vals))
        rows.append(2.0 / math.sqrt(X) * (torch.einsum("bnx,bn->bx", basis[:, :, 0], w) - x[:, 0, 0]))
        rows.append(1e-4 * w)
        return torch.cat(rows, dim=-1)

    with torch.no_grad():
        direct = levenberg_marquardt(residual, torch.ones(B, N, dtype=torch.float64), [points])
        solution = torch.einsum("bn...,bn->b...", basis, direct.w)
    torch.testing.assert_close(out.weights[:, 0], direct.w, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(out.solution[:, 0], solution, rtol=1e-8, atol=1e-10)
    assert torch.equal(out.iterations[:, 0], direct.iterations)


def test_each_expert_solves_its_own_problem():
    model = HardConstraintMoE(**DS, experts=[1, 4], n_points=80, **TINY)
    model.eval()
    out = model.solve(_ds_input())
    labels = expert_labels((9, 16), (1, 4))
    for k in range(4):  # the sampled points of expert k lie in its box
        assert (labels.flatten()[out.points[:, k]] == k).all()
    assert not torch.allclose(out.weights[:, 0], out.weights[:, 1])


# -- the solve ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("experts", [[1, 1, 1], [1, 2, 2]])
def test_residual_at_the_sampled_points_is_below_tolerance_when_the_basis_holds_a_solution(experts):
    # Inviscid vorticity with the FNO forcing f(x + y) and w0 = 0: w = t f is an exact solution
    # (the velocity is parallel to the level lines of w, so u . grad w = 0), and t f = (t / T) T f.
    nt, n, T = 5, 8, 2.0
    physics = VorticityResidual(final_time=T, nu=0.0)
    f = physics.forcing(n, torch.float64)
    g = torch.Generator().manual_seed(1)
    others = torch.randn(3, nt, n, n, generator=g, dtype=torch.float64)
    basis = torch.cat([f.expand(1, nt, n, n), others])  # f is constant in time; the ramp t / T is applied by the model
    model = HardConstraintMoE(
        pde="navier_stokes", pde_params={"final_time": T, "nu": 0.0}, ic_mode="exact", experts=experts,
        n_basis=4, n_points=120, ridge=0.0, width=4, modes=2, n_layers=1, projection_channels=4,
    )
    model.backbone = FixedBasis(basis)
    model.eval()
    x = torch.zeros(2, 1, nt, n, n)
    out = model.solve(x)
    assert out.converged.all()
    assert out.cost.max() < 1e-16  # 0.5 ||r||^2 over the rows of each expert
    sampled = model.physics.residual(out.solution[:, 0]).flatten(1).gather(1, out.points.flatten(1))
    assert sampled.abs().max() < 1e-8
    expected = torch.zeros(4, dtype=torch.float64)
    expected[0] = T
    torch.testing.assert_close(out.weights, expected.expand_as(out.weights), rtol=0, atol=1e-6)
    exact = torch.linspace(0, T, nt, dtype=torch.float64).view(nt, 1, 1) * f
    torch.testing.assert_close(out.solution[:, 0], exact.expand(2, nt, n, n), rtol=0, atol=1e-6)


def test_the_solve_lowers_the_sampled_residual_below_the_initial_guess():
    model = HardConstraintMoE(**NS, experts=[1, 2, 2], n_points=200, **TINY)
    model.eval()
    x = _ns_input()
    out = model.solve(x)
    model.solver_options["max_iter"] = 0
    initial = model.solve(x)
    assert (out.cost < initial.cost).all()
    assert (out.iterations >= 1).all() and (out.iterations <= 50).all()


# -- initial condition -------------------------------------------------------------------------------
@pytest.mark.parametrize("constraint", ["hard", "soft"])
@pytest.mark.parametrize("experts", [[1, 1, 1], [1, 2, 2]])
def test_initial_condition_holds_exactly_with_the_exact_construction(constraint, experts):
    kwargs = {**NS, "constraint": constraint, "experts": experts if constraint == "hard" else None}
    model = HardConstraintMoE(**kwargs, n_points=100, **TINY)
    model.eval()
    x = _ns_input(seed=3)
    out = model.solve(x)
    u0 = x[:, 0, 0].double()
    assert torch.equal(out.solution[:, 0, 0], u0)  # bit for bit, at every point of t = 0
    assert not torch.allclose(out.solution[:, 0, 1], u0)  # later times are predicted
    if model.n_experts == 1:  # one set of weights: the spatial mean of u0 is kept at every time
        mean = out.solution.mean(dim=(-2, -1)) - u0.mean(dim=(-2, -1))[:, None, None]
        assert mean.abs().max() < 1e-12


def test_exact_construction_also_works_for_diffusion_sorption():
    model = HardConstraintMoE(**{**DS, "ic_mode": "exact"}, experts=[1, 4], n_points=60, **TINY)
    model.eval()
    x = _ds_input()
    assert torch.equal(model.solve(x).solution[:, 0, 0], x[:, 0, 0].double())


def test_residual_mode_fits_the_initial_condition_only_approximately():
    model = HardConstraintMoE(**DS, experts=[1, 4], n_points=60, ic_weight=100.0, **TINY)
    model.eval()
    x = _ds_input()
    error = (model.solve(x).solution[:, 0, 0] - x[:, 0, 0]).abs().max()
    assert 0 < error < 0.05


# -- gradients ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("setup", [(DS, [1, 2]), (NS, [1, 2, 2])])
def test_loss_gradient_through_the_experts_matches_finite_differences(setup):
    kwargs, experts = setup
    torch.manual_seed(0)
    # ridge 1e-3 (default 1e-4): with weights the data leave flat, the solution moves along those directions by
    # round-off, the loss through it is noisy at the 1e-4 level and a finite difference tells nothing
    tight = {"gtol": 1e-13, "ftol": 0.0, "xtol": 0.0, "max_iter": 1000, "ridge": 1e-3}
    model = HardConstraintMoE(**kwargs, experts=experts, n_points=40, **TINY, **tight).double()
    model.eval()  # fixed points
    x = (_ds_input() if kwargs is DS else _ns_input()).double()
    assert model.solve(x).converged.all()  # the implicit gradient holds at an optimum

    def loss() -> torch.Tensor:
        u = model.solve(x).solution[:, 0]
        return model.physics.residual(u)[:, 1:].pow(2).mean()

    param = model.backbone.projection_out.weight
    model.zero_grad()
    loss().backward()
    analytic = param.grad.clone()
    def central_difference(index, eps: float) -> float:
        with torch.no_grad():
            param[index] += eps
            plus = loss().item()
            param[index] -= 2 * eps
            minus = loss().item()
            param[index] += eps
        return (plus - minus) / (2 * eps)

    eps = 1e-3  # the solves are accurate to round-off amplified by the solver's stopping: keep the step large
    for index in [(0, 0), (1, 3), (4, 2)]:
        fd = central_difference(index, eps)
        assert abs(fd) > 1e-8
        assert abs(fd - analytic[index].item()) <= 1e-4 * abs(fd), (index, fd, analytic[index].item())


@pytest.mark.parametrize("setup", [(DS, [1, 2]), (NS, [1, 2, 2])])
def test_closed_form_hessian_equals_automatic_differentiation(setup, monkeypatch):
    """J^T J plus the experts' closed-form curvature (second derivatives of the pointwise residual) is the
    Hessian of 0.5 ||r||^2 by forward-over-reverse differentiation, away from the optimum too."""
    import surrogates.models.hc_moe as hc_moe
    from surrogates.nn import least_squares

    kwargs, experts = setup
    captured = {}

    def capture(residual, w0, params, **options):
        captured.update(residual=residual, params=params, curvature=options["curvature"], w0=w0)
        return least_squares.solve_least_squares(residual, w0, params, **options)

    monkeypatch.setattr(hc_moe, "solve_least_squares", capture)
    torch.manual_seed(0)
    model = HardConstraintMoE(**kwargs, experts=experts, n_points=40, **TINY).double().eval()
    x = (_ds_input() if kwargs is DS else _ns_input()).double()
    if kwargs is DS:  # positive concentrations, where the sorption term is smooth
        model.backbone = FixedBasis(0.05 + 0.1 * torch.rand(TINY["n_basis"], *x.shape[2:], dtype=torch.float64))
    model.solve(x)
    params = [p.detach() for p in captured["params"]]
    w = captured["w0"] + 0.3 * torch.rand_like(captured["w0"])
    automatic = least_squares._hessian(captured["residual"], w, params)
    jacobian = least_squares.batched_jacobian(captured["residual"], w, *params)
    closed_form = jacobian.transpose(1, 2) @ jacobian + captured["curvature"](w, *params)
    second_order = automatic - jacobian.transpose(1, 2) @ jacobian
    assert second_order.abs().amax() > 1e-6 * automatic.abs().amax()  # the PDE is nonlinear: not Gauss-Newton
    torch.testing.assert_close(closed_form, automatic, rtol=1e-9, atol=1e-9 * float(automatic.abs().amax()))


def test_soft_constraint_learns_its_weights_and_runs_no_solver():
    """Soft constraint, ic_mode "residual": u = sum_n w_n b_n with the learned w (no offset, no solve), so
    d(sum u)/dw_n is the sum of b_n over the batch and the grid."""
    torch.manual_seed(0)
    model = HardConstraintMoE(**{**DS, "constraint": "soft"}, **TINY)
    assert model.soft_weights.requires_grad
    x = _ds_input()
    out = model.solve(x)
    assert out.iterations is None
    with torch.no_grad():
        basis = model.backbone(model.input_normalizer.encode(x)).double()  # (B, N, T, X)
    w = model.soft_weights.detach().double()
    expected = torch.einsum("bntx,n->btx", basis, w)
    # float64 sums of N = 6 products of float32-valued factors: a few eps64 of the sum of their magnitudes
    eps64 = torch.finfo(torch.float64).eps
    magnitude = torch.einsum("bntx,n->btx", basis.abs(), w.abs())
    assert (out.solution[:, 0] - expected).abs().max() <= 8 * eps64 * magnitude.max()
    torch.testing.assert_close(out.weights, w.expand(2, 1, -1), rtol=0, atol=0)
    out.solution.sum().backward()
    # the float64 gradient (sums of B T X = 288 entries) rounded to float32 once: eps32 relative,
    # plus the float64 summation's 288 eps64 of the summed magnitudes
    grad_expected = basis.sum(dim=(0, 2, 3))
    atol = 288 * eps64 * float(basis.abs().sum(dim=(0, 2, 3)).max())
    torch.testing.assert_close(model.soft_weights.grad.double(), grad_expected,
                               rtol=torch.finfo(torch.float32).eps, atol=atol)


# -- training and checkpoint -------------------------------------------------------------------------
def _fit(data_dir, out_dir, **model_kwargs):
    from surrogates.data.space_time import SpaceTimeDataModule
    from surrogates.tasks.hard_constraint import HardConstraintTask

    L.seed_everything(0)
    datamodule = SpaceTimeDataModule(data_dir, inputs=["u"], targets=["u"], batch_size=4)
    net = HardConstraintMoE(**{**DS, **TINY, **model_kwargs})
    task = HardConstraintTask(net, optimizer=functools.partial(torch.optim.Adam, lr=3e-3))
    checkpoint = L.pytorch.callbacks.ModelCheckpoint(dirpath=out_dir, filename="best", monitor="val/rel_l2")
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, callbacks=[checkpoint],
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(task, datamodule=datamodule)
    return task, datamodule, checkpoint.best_model_path


def test_checkpoint_round_trip_through_surrogate_load(diffusion_sorption_dir, tmp_path):
    from surrogates import Surrogate

    task, datamodule, path = _fit(diffusion_sorption_dir, tmp_path, experts=[1, 2], n_points=50)
    # the model normalizes its backbone's input with the training statistics; the task's normalizers are the identity
    torch.testing.assert_close(task.net.input_normalizer.mean, datamodule.input_normalizer.mean)
    assert task.model.input_normalizer.mean.abs().max() == 0 and task.model.target_normalizer.std.eq(1).all()
    assert task.data_schema.spatial_dims == ("time", "x")
    surrogate = Surrogate.load(path)
    assert type(surrogate.model) is HardConstraintMoE
    assert surrogate.model.init_kwargs == task.net.init_kwargs
    x = next(iter(datamodule.val_dataloader()))["x"]
    task.eval()
    with torch.no_grad():
        expected = task(x)
    torch.testing.assert_close(surrogate.predict_tensor(x), expected, rtol=1e-5, atol=1e-6)


def test_task_rejects_a_final_time_that_is_not_the_data_s(diffusion_sorption_dir, tmp_path):
    with pytest.raises(ValueError, match="final_time"):
        _fit(diffusion_sorption_dir, tmp_path, experts=[1, 2], pde_params={"final_time": 100.0})

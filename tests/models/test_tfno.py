"""TFNO and MG-TFNO: constructor round trip, shapes, patch stitching against the whole-domain model,
chunked (checkpointed) training equals unchunked, checkpoints served by Surrogate."""

from __future__ import annotations

import pytest
import torch

from surrogates.checkpoint import build_model
from surrogates.models.fno import FNO
from surrogates.models.mg_tfno import MGTFNO
from surrogates.models.tfno import TFNO
from surrogates.nn.multigrid_patching import stitch_patches
from tests.models.conftest import assert_surrogate_matches_task, fit_and_checkpoint

EPS64 = torch.finfo(torch.float64).eps
SMALL = dict(modes=4, width=6, n_layers=2, projection_channels=8)


def _structure(model: torch.nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    return [(name, tuple(p.shape)) for name, p in model.named_parameters()]


@pytest.mark.parametrize(
    "cls, kwargs",
    [(TFNO, dict(factorization="cp", rank=0.2, norm="group", skip="soft_gating")),
     (MGTFNO, dict(levels=2, patch_padding=0.25, boundary="reflect", patches_per_chunk=3, norm="instance",
                     release_memory=False))],
)
def test_init_config_round_trip(cls, kwargs):
    model = cls(in_channels=2, out_channels=3, **SMALL, **kwargs)
    config = model.init_config()
    assert config["name"] == cls.registered_name and config["kwargs"]["in_channels"] == 2
    rebuilt = build_model(config)
    assert type(rebuilt) is cls and _structure(rebuilt) == _structure(model) and rebuilt.init_config() == config


@pytest.mark.parametrize("cls", [TFNO, MGTFNO])
def test_a_network_saved_before_the_rank_options_rebuilds_with_its_ranks(cls):
    """A model config written before ``full_rank_modes`` / ``round_up_modes`` existed lacks them: rebuilt with the
    defaults it gets the ranks it was saved with, so its weights load (the configs' ``[layers]`` is opt-in)."""
    old = cls(1, 1, modes=12, width=32, n_layers=4, rank=0.09, round_up_modes=())
    config = old.init_config()
    for key in ("full_rank_modes", "round_up_modes"):
        del config["kwargs"][key]
    rebuilt = build_model(config)
    assert rebuilt.factorized.ranks == old.factorized.ranks == [2, 15, 7, 20, 20, 2]
    rebuilt.load_state_dict(old.state_dict())  # strict: every tensor has its saved shape
    configured = cls(1, 1, modes=12, width=32, n_layers=4, rank=0.09, round_up_modes=["layers"])
    assert configured.factorized.ranks == [3, 14, 7, 19, 19, 2]


@pytest.mark.parametrize("dim, sizes", [(1, [20]), (2, [16, 12]), (3, [8, 6, 10])])
@pytest.mark.parametrize("norm, skip", [("none", "linear"), ("instance", "identity"), ("group", "soft_gating")])
def test_tfno_shapes(dim, sizes, norm, skip):
    model = TFNO(2, 3, **SMALL, dim=dim, norm=norm, skip=skip)
    assert model(torch.randn(2, 2, *sizes)).shape == (2, 3, *sizes)


@pytest.mark.parametrize("levels, sizes", [(0, (10, 6)), (1, (16, 12)), (2, (32, 16))])
def test_mg_tfno_shapes(levels, sizes):
    model = MGTFNO(2, 3, **SMALL, levels=levels)
    # the field's 2 channels and the whole domain's 2 coordinates, each with its context levels
    assert model.init_kwargs["in_channels"] == 2 and model.in_channels == (2 + 2) * (levels + 1)
    assert model(torch.randn(2, 2, *sizes)).shape == (2, 3, *sizes)


def test_fewer_parameters_than_the_dense_fno():
    dense = sum(p.numel() for p in FNO(1, 1, modes=12, width=32).parameters())
    tensorized = sum(p.numel() for p in TFNO(1, 1, modes=12, width=32, rank=0.05).parameters())
    assert tensorized < dense / 10


def test_patch_stitching_equals_the_whole_domain_model_when_the_context_covers_it():
    """With padding of half a patch on a periodic grid, every padded patch is the whole field rolled; a
    shift-equivariant network (no positional embedding) that ignores the coarse channels then gives, once
    stitched, the whole-domain model's output."""
    torch.manual_seed(0)
    common = dict(**SMALL, positional_embedding=False, grid="periodic", rank=0.5)
    patched = MGTFNO(1, 1, **common, levels=1, patch_padding=0.5, boundary="periodic").double()
    whole = TFNO(1, 1, **common).double()
    with torch.no_grad():
        patched.lifting.weight[:, 1:] = 0  # the level-1 context channel
        state = patched.state_dict()
        state["lifting.weight"] = state["lifting.weight"][:, :1]
        whole.load_state_dict(state)
        x = torch.randn(2, 1, 16, 16, dtype=torch.float64)
        expected, actual = whole(x), patched(x)
    # A roll commutes with the FFT-based layers up to their round-off, O(log n) eps per transform, a few
    # transforms per layer: 100 eps of the output scale covers it.
    torch.testing.assert_close(actual, expected, rtol=0, atol=100 * EPS64 * expected.abs().max().item())


def test_chunked_patches_give_the_same_output_and_gradients():
    torch.manual_seed(0)
    model = MGTFNO(1, 1, **SMALL, levels=1).double()
    x = torch.randn(2, 1, 16, 16, dtype=torch.float64)
    results = []
    for chunk in (0, 1):  # all patches at once, then one position at a time with activation checkpointing
        model.patches_per_chunk = chunk
        model.zero_grad()
        loss = model(x).square().sum()
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in model.parameters()]))
    (loss0, grads0), (loss1, grads1) = results
    # the same operations on differently batched patches: BLAS round-off only (float64)
    torch.testing.assert_close(loss1, loss0, rtol=1e-12, atol=0)
    for g0, g1 in zip(grads0, grads1):
        torch.testing.assert_close(g1, g0, rtol=1e-10, atol=1e-12)


def test_chunked_training_frees_the_heap_between_chunks_forward_and_backward(monkeypatch):
    """Each chunk's forward is followed by a release; in the backward pass a release precedes every
    chunk's recomputation, so no chunk starts on the previous one's freed (but resident) activations."""
    import surrogates.models.mg_tfno as mg

    torch.manual_seed(0)
    model = MGTFNO(1, 1, **SMALL, levels=1, patches_per_chunk=1)
    calls = []
    monkeypatch.setattr(mg, "release_free_memory", lambda: calls.append("release"))
    run_chunk = model.forward_with_weights
    monkeypatch.setattr(model, "forward_with_weights", lambda *a: calls.append("chunk") or run_chunk(*a))
    loss = model(torch.randn(2, 1, 16, 16)).square().sum()
    assert calls == ["chunk", "release"] * 4  # 2x2 patch positions
    calls.clear()
    loss.backward()
    assert calls == ["release", "chunk"] * 4  # recomputation under checkpointing, last chunk first
    calls.clear()
    model.patches_per_chunk = 0  # all positions at once: nothing to release between
    model(torch.randn(2, 1, 16, 16)).sum().backward()
    assert calls == ["chunk"]
    calls.clear()
    model.patches_per_chunk, model.release_memory = 1, False  # chunks, the heap left alone
    model(torch.randn(2, 1, 16, 16)).sum().backward()
    assert calls == ["chunk"] * 8


@pytest.mark.parametrize(
    "cls, kwargs, message",
    [(FNO, dict(norm="batch"), "norm must be one of .*, got 'batch'"),
     (FNO, dict(skip="conv"), "skip must be one of .*, got 'conv'"),
     (TFNO, dict(norm="batch"), "norm must be one of .*, got 'batch'"),
     (TFNO, dict(factorization="tt"), "factorization must be one of .*, got 'tt'"),
     (TFNO, dict(rank=2.0), r"a fractional rank must lie in \(0, 1\], got 2.0")],
)
def test_backbone_and_factorization_bad_arguments(cls, kwargs, message):
    # the message names the argument at fault and its value: a ValueError from elsewhere would not match
    with pytest.raises(ValueError, match=message):
        cls(1, 1, **SMALL, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [(dict(dim=3), "MGTFNO decomposes 2D fields only, got dim=3"), (dict(levels=-1), r"levels must be in \[0, 16\], got -1"),
     (dict(patch_padding=-0.1), r"patch_padding must be in \[0, 1\], got -0.1"),
     (dict(boundary="zero"), "boundary must be one of .*, got 'zero'"),
     (dict(patches_per_chunk=-1), "patches_per_chunk must be >= 0, got -1")],
)
def test_mg_tfno_bad_constructor_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MGTFNO(1, 1, **SMALL, **kwargs)


def test_mg_tfno_patches_see_the_coordinates_of_the_whole_domain():
    """The fine coordinate channels of the patches, stitched, are the whole domain's grid."""
    model = MGTFNO(1, 1, **SMALL, levels=2)
    seen = {}
    model.forward_with_weights = lambda chunk, weights: seen.setdefault("x", chunk)[:, :1]
    model(torch.zeros(1, 1, 16, 8))
    coordinates = stitch_patches(seen["x"][:, 1:3], model.patch_grid((16, 8)))
    torch.testing.assert_close(coordinates, model.global_embedding(torch.zeros(1, 1, 16, 8))[:, 1:])


def test_mg_tfno_bad_inputs():
    model = MGTFNO(1, 1, **SMALL, levels=2)
    with pytest.raises(ValueError, match=r"\(batch, 1, n1, n2\)"):
        model(torch.randn(2, 3, 16, 16))
    with pytest.raises(ValueError, match="multiple of 4"):
        model(torch.randn(2, 1, 18, 16))


@pytest.mark.parametrize(
    "net", [TFNO(1, 1, **SMALL, rank=0.2), MGTFNO(1, 1, **SMALL, levels=1, boundary="reflect", patches_per_chunk=2)],
    ids=["tfno", "mg_tfno"],
)
def test_checkpoint_round_trip_through_the_task_and_surrogate(net, darcy_dir, tmp_path):
    task, best = fit_and_checkpoint(net, darcy_dir, tmp_path)
    assert_surrogate_matches_task(task, best, torch.rand(3, 1, 16, 16) * 9 + 3)

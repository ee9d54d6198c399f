"""Factorized spectral weights: full-rank Tucker reproduces the dense FNO, parameter counts, initialization."""

from __future__ import annotations

import math

import pytest
import torch

from surrogates.models.fno import FNO
from surrogates.models.tfno import TFNO
from surrogates.nn.factorized_weights import RECOMMENDED_ROUND_UP_MODES, FactorizedSpectralWeights, tucker_parameter_count

EPS64 = torch.finfo(torch.float64).eps


def _dense_and_tensorized(**kwargs) -> tuple[FNO, TFNO]:
    """A dense FNO and a TFNO that share every weight but the spectral ones (float64)."""
    torch.manual_seed(0)
    dense = FNO(**kwargs).double()
    tensorized = TFNO(**kwargs, rank=1.0).double()
    shared = {k: v for k, v in dense.state_dict().items() if not k.startswith("spectral.")}
    missing, unexpected = tensorized.load_state_dict(shared, strict=False)
    assert not unexpected and all(k.startswith("factorized.") for k in missing)
    return dense, tensorized


def test_full_rank_tucker_reproduces_the_dense_fno():
    kwargs = dict(in_channels=2, out_channels=1, modes=(4, 3), width=6, n_layers=3, projection_channels=8)
    dense, tensorized = _dense_and_tensorized(**kwargs)
    factorized = tensorized.factorized
    assert factorized.ranks == list(factorized.shape)  # rank=1.0 is the full Tucker rank
    stacked = torch.stack([conv.weight.detach() for conv in dense.spectral])  # (L, K, C, C, 2)
    factorized.load_dense(stacked.reshape(factorized.shape))
    x = torch.randn(3, 2, 16, 12, dtype=torch.float64)
    with torch.no_grad():
        expected, actual = dense(x), tensorized(x)
    # HOSVD at full rank: square orthogonal factors from backward-stable SVDs; each of the N mode products
    # rounds with a relative error <= I_n eps, so the weights carry <= sum(I_n) eps relative error, which the
    # (about unit-Lipschitz) layers pass on to the output; 10x for the Lipschitz constant and the FFTs.
    tolerance = 10 * sum(factorized.shape) * EPS64 * expected.abs().max().item()
    torch.testing.assert_close(actual, expected, rtol=0, atol=tolerance)


@pytest.mark.parametrize("factorization", ["tucker", "cp"])
def test_layers_use_the_reconstructed_tensor(factorization):
    """The TFNO equals a dense FNO loaded with its reconstructed weights (CP included, any rank)."""
    kwargs = dict(in_channels=1, out_channels=1, modes=4, width=5, n_layers=2, projection_channels=8)
    torch.manual_seed(1)
    tensorized = TFNO(**kwargs, factorization=factorization, rank=0.3).double()
    dense = FNO(**kwargs).double()
    state = {k: v for k, v in tensorized.state_dict().items() if not k.startswith("factorized.")}
    for i, weight in enumerate(tensorized.spectral_weights()):
        state[f"spectral.{i}.weight"] = weight.detach()
    dense.load_state_dict(state)
    x = torch.randn(2, 1, 12, 12, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(tensorized(x), dense(x), rtol=0, atol=0)  # the same operations


@pytest.mark.parametrize("fraction", [0.02, 0.05, 0.1, 0.3])
def test_parameter_count_at_a_rank_fraction(fraction):
    shape_args = dict(n_layers=4, weight_shape=(24, 12), in_channels=32, out_channels=32)
    tucker = FactorizedSpectralWeights(**shape_args, factorization="tucker", rank=fraction)
    # counts only (no reconstruction here): past the default memory budget of CP's reconstruction on purpose
    cp = FactorizedSpectralWeights(**shape_args, factorization="cp", rank=fraction, max_cp_bytes=2**40)
    count = lambda module: sum(p.numel() for p in module.parameters())  # noqa: E731
    assert count(tucker) == math.prod(tucker.ranks) + sum(n * r for n, r in zip(tucker.shape, tucker.ranks))
    assert count(cp) == cp.ranks[0] * sum(cp.shape)
    assert tucker.dense_size == 4 * 24 * 12 * 32 * 32 * 2
    # integer ranks: CP to within one rank, Tucker (integer ranks of 6 modes) to within 35%
    assert abs(count(cp) - fraction * cp.dense_size) <= sum(cp.shape)
    assert abs(count(tucker) / tucker.dense_size - fraction) <= 0.35 * fraction
    assert tucker.ranks[-1] == 2  # real and imaginary parts are not tied


@pytest.mark.parametrize("fraction", [0.02, 0.09, 0.3])
@pytest.mark.parametrize("full", [(), ("complex",), ("layers",), ("layers", "complex")])
def test_full_rank_modes_at_a_rank_fraction(fraction, full):
    """The named modes keep their size; the others share the fraction (same count formula and tolerance)."""
    weights = FactorizedSpectralWeights(4, (24, 12), 32, 32, rank=fraction, full_rank_modes=full)
    for name, mode in (("layers", 0), ("complex", -1)):
        if name in full:
            assert weights.ranks[mode] == weights.shape[mode]
    assert all(1 <= r <= n for r, n in zip(weights.ranks, weights.shape))
    count = sum(p.numel() for p in weights.parameters())
    assert count == math.prod(weights.ranks) + sum(n * r for n, r in zip(weights.shape, weights.ranks))
    assert abs(count / weights.dense_size - fraction) <= 0.35 * fraction


@pytest.mark.parametrize("fraction", [0.02, 0.05, 0.09, 0.1, 0.3])
def test_rounded_up_ranks_are_one_scale_of_the_sizes_with_the_closest_count(fraction):
    """The configs' rule: ranks ceil(c I) on the layers, round(c I) on channels and modes, for one c; no other c
    (a grid finer than any gap between the points where a rank changes: k/4 and (2k+1)/48, /24, /64, all
    multiples of 1/192) comes closer to the fraction."""
    shape = (4, 24, 12, 32, 32, 2)
    weights = FactorizedSpectralWeights(4, (24, 12), 32, 32, rank=fraction, round_up_modes=RECOMMENDED_ROUND_UP_MODES)
    ranks = weights.ranks
    assert ranks[-1] == 2
    # c lies in (r-1, r] / I on the rounded-up mode and in [r-1/2, r+1/2) / I on the others
    low = max([(ranks[0] - 1) / 4] + [(r - 0.5) / n for r, n in zip(ranks[1:5], shape[1:5])])
    high = min([ranks[0] / 4] + [(r + 0.5) / n for r, n in zip(ranks[1:5], shape[1:5])])
    assert low < high
    target = fraction * math.prod(shape)
    best = abs(tucker_parameter_count(shape, ranks) - target)
    for c in torch.linspace(0.01, 1.0, 20000).tolist():
        other = [math.ceil(c * 4), *(max(1, math.floor(c * n + 0.5)) for n in shape[1:5]), 2]
        assert abs(tucker_parameter_count(shape, other) - target) >= best
    # the benchmark's fraction: the 4 layers at rank 3, not tensorly's 2
    if fraction == 0.09:
        assert ranks == [3, 14, 7, 19, 19, 2]
        nearest = FactorizedSpectralWeights(4, (24, 12), 32, 32, rank=0.09, round_up_modes=())
        assert nearest.ranks == [2, 15, 7, 20, 20, 2]
        # the default keeps the rule of networks saved before the option (their arguments lack it)
        assert FactorizedSpectralWeights(4, (24, 12), 32, 32, rank=0.09).ranks == nearest.ranks


def test_full_rank_modes_leave_explicit_ranks_alone():
    weights = FactorizedSpectralWeights(4, (4, 3), 4, 4, rank=[2, 3, 2, 4, 4, 1], full_rank_modes=("layers", "complex"))
    assert weights.ranks == [2, 3, 2, 4, 4, 1]


@pytest.mark.parametrize("factorization", ["tucker", "cp"])
def test_initial_weights_have_the_dense_layers_spread(factorization):
    torch.manual_seed(0)
    weights = FactorizedSpectralWeights(4, (16, 8), 16, 16, factorization=factorization, rank=0.1, std=0.125)
    dense = weights.dense()
    # The row balancing makes every slice of the last mode have root mean square `std` up to float32
    # round-off (means of ~10^4 squares: ~log2(n) eps32 ~ 1e-6 relative), so the whole tensor's root
    # mean square is `std` to the same order; rtol 1e-5. Without the balancing this seed is 0.1% (Tucker)
    # and 12% (CP) off: the former rel=0.15 passed either way.
    rms = dense.square().mean().sqrt().item()
    assert rms == pytest.approx(0.125, rel=1e-5)
    # std^2 = N/(N-1) (rms^2 - mean^2): the entries' mean is a small fraction of rms (<= 0.6% over 40 seeds
    # of both factorizations), so std is below rms by ~mean^2/(2 rms^2) <= 2e-5 (plus N/(N-1) - 1 ~ 4e-6)
    assert dense.std().item() == pytest.approx(0.125, rel=1e-4)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [(dict(factorization="tt"), "factorization must be one of .*, got 'tt'"),
     (dict(rank=0.0), r"a fractional rank must lie in \(0, 1\], got 0.0"),
     (dict(rank=1.5), r"a fractional rank must lie in \(0, 1\], got 1.5"),
     (dict(rank=[2, 2]), r"Tucker ranks must be a fraction or 6 ints within \[2, 4, 3, 4, 4, 2\], got \[2, 2\]"),
     (dict(factorization="cp", rank=[3]), r"a CP rank must be a positive int or a fraction, got \[3\]"),
     (dict(rank=True), "rank must be a fraction or explicit ranks, got True"),
     (dict(full_rank_modes=("channels",)), r"full_rank_modes must name modes of .*, got \('channels',\)"),
     (dict(full_rank_modes="layers"), "full_rank_modes must name modes of .*, got 'layers'"),
     (dict(round_up_modes=("modes",)), r"round_up_modes must name modes of .*, got \('modes',\)")],
)
def test_bad_arguments(kwargs, message):
    # the message names the argument at fault and its value: a ValueError from elsewhere would not match
    with pytest.raises(ValueError, match=message):
        FactorizedSpectralWeights(2, (4, 3), 4, 4, **{"rank": 0.1, **kwargs})


def test_load_dense_checks_the_shape():
    weights = FactorizedSpectralWeights(2, (4, 3), 4, 4)
    with pytest.raises(ValueError, match="shape"):
        weights.load_dense(torch.zeros(2, 4, 3, 4, 4))


def test_explicit_tucker_ranks_from_a_config_list():
    from omegaconf import OmegaConf

    ranks = OmegaConf.create({"rank": [2, 3, 2, 4, 4, 2]}).rank  # what Hydra passes: a ListConfig
    weights = FactorizedSpectralWeights(2, (4, 3), 4, 4, rank=ranks)
    assert weights.ranks == [2, 3, 2, 4, 4, 2]
    assert weights.core.shape == (2, 3, 2, 4, 4, 2)
    with pytest.raises(ValueError, match="Tucker ranks must be a fraction or 6 ints .*, got '234442'"):
        FactorizedSpectralWeights(2, (4, 3), 4, 4, rank="234442")


@pytest.mark.parametrize("factorization", ["tucker", "cp"])
def test_every_layer_and_mode_index_starts_with_the_dense_spread(factorization):
    """Random factors give each index of a mode its own scale (rank 2 over 4 layers: layers 4x apart);
    the row rescaling brings every slice's root mean square to ``std``: the mode rescaled last exactly
    (float32 means of ~10^4-10^5 squares: relative round-off ~1e-6), the others after the sweeps (three
    Tucker, two CP), which move them by the product of the later modes' near-1 scales, to well within 1%."""
    torch.manual_seed(0)
    # small enough for CP's Khatri-Rao reconstruction (its memory grows with rank x dense size)
    weights = FactorizedSpectralWeights(4, (16, 8), 16, 16, factorization=factorization, rank=0.1, std=0.125,
                                        full_rank_modes=("complex",))
    assert weights.ranks[0] < 4 or factorization == "cp"  # Tucker: fewer ranks than layers, the case at issue
    tensor = weights.dense()
    for mode in range(tensor.ndim):
        rms = tensor.square().mean(dim=[m for m in range(tensor.ndim) if m != mode]).sqrt()
        tolerance = 1e-5 if mode == tensor.ndim - 1 else 1e-2
        torch.testing.assert_close(rms, torch.full_like(rms, 0.125), rtol=tolerance, atol=0)


def test_a_cp_rank_whose_reconstruction_would_exceed_the_memory_budget_is_refused_before_allocating():
    """CP's reconstruction forms the Khatri-Rao product of all factors but the first: ``cp_work_bytes`` counts
    exactly its numbers (and the start's Gram matrices); beyond ``max_cp_bytes`` the constructor refuses."""
    import tensorly as tl

    from surrogates.nn.factorized_weights import MAX_CP_BYTES, cp_work_bytes

    small = FactorizedSpectralWeights(2, (4, 3), 4, 4, factorization="cp", rank=0.2)
    (r,) = small.ranks
    with tl.backend_context("pytorch", local_threadsafe=True):
        khatri_rao = tl.tenalg.khatri_rao(list(small.factors)[1:])
    assert khatri_rao.numel() * 4 + len(small.shape) * r * r * 4 == cp_work_bytes(small.shape, r)
    with pytest.raises(ValueError, match="max_cp_bytes"):
        FactorizedSpectralWeights(2, (4, 3), 4, 4, factorization="cp", rank=0.2, max_cp_bytes=cp_work_bytes(small.shape, r) - 1)
    # an FNO layer stack at CP fraction 1: R ~ 22,000, a Khatri-Rao product of about 50 GiB
    shape = (4, 24, 12, 32, 32, 2)
    with pytest.raises(ValueError, match="GiB"):
        FactorizedSpectralWeights(4, (24, 12), 32, 32, factorization="cp", rank=1.0)
    assert cp_work_bytes(shape, 10_000) > MAX_CP_BYTES
    # Tucker is not limited by it (its reconstruction stays within the dense size)
    assert FactorizedSpectralWeights(4, (24, 12), 32, 32, factorization="tucker", rank=1.0, max_cp_bytes=0).ranks == list(shape)

"""The saved model: ``NormalizedOperator`` and ``NormalizedStepper`` wrap normalize -> network -> denormalize."""

from __future__ import annotations

import pytest
import torch

from surrogates.models.fno import FNO
from surrogates.models.normalized import NormalizedOperator, NormalizedStepper
from surrogates.models.pde_refiner import PDERefiner
from surrogates.nn.normalization import Normalizer

U32 = 2.0**-24


def _operator() -> NormalizedOperator:
    torch.manual_seed(0)
    net = FNO(in_channels=2, out_channels=1, dim=2, modes=3, width=4, projection_channels=4)
    return NormalizedOperator(
        net, Normalizer.from_stats([1.5, -20.0], [0.5, 4.0]), Normalizer.from_stats([0.01], [0.003])
    ).eval()


def _stepper(k: int = 1) -> NormalizedStepper:
    torch.manual_seed(0)
    net = PDERefiner(1, 1, n_params=2, num_refinement_steps=k, hidden_channels=4, channel_multipliers=[1, 2],
                     norm_groups=2, cond_channels=8)
    return NormalizedStepper(net, Normalizer.from_stats([0.3], [1.7]), torch.tensor([0.8, 0.25])).eval()


def test_decode_undoes_encode_to_float32_round_off():
    model = _operator()
    x = torch.randn(3, 2, 8, 8) * torch.tensor([0.5, 4.0]).view(1, 2, 1, 1) + torch.tensor([1.5, -20.0]).view(1, 2, 1, 1)
    back = model.input_normalizer.decode(model.encode(x))
    # (x - m) / s then * s + m: three roundings of numbers of magnitude max(|x|, |m|) (no cancellation beyond it)
    bound = 4 * U32 * (x.abs() + 20.0)
    assert ((back - x).abs() <= bound).all()
    z = torch.randn(3, 1, 8, 8) * 0.003 + 0.01
    back = model.target_normalizer.encode(model.decode(model.target_normalizer.encode(z)))
    assert ((back - model.target_normalizer.encode(z)).abs() <= 8 * U32 * (back.abs() + 4.0)).all()


def test_operator_forward_is_the_composition():
    model = _operator()
    x = torch.randn(2, 2, 8, 8) + 1
    manual = (model.net((x - model.input_normalizer.mean.view(1, 2, 1, 1)) / (model.input_normalizer.std.view(1, 2, 1, 1) + 1e-6))
              * (model.target_normalizer.std + 1e-6) + model.target_normalizer.mean)
    with torch.no_grad():
        torch.testing.assert_close(model(x), manual, rtol=0, atol=0)
        torch.testing.assert_close(model(x), model.decode(model.net(model.encode(x))), rtol=0, atol=0)


def test_operator_state_holds_the_statistics_once():
    model = _operator()
    keys = set(model.state_dict())
    assert {"input_normalizer.mean", "input_normalizer.std", "target_normalizer.mean", "target_normalizer.std"} <= keys
    assert all(key.startswith(("net.", "input_normalizer.", "target_normalizer.")) for key in keys)
    empty = NormalizedOperator(FNO(**model.net.init_kwargs))  # default normalizers sized from the network
    empty.load_state_dict(model.state_dict())
    assert torch.equal(empty.input_normalizer.std, model.input_normalizer.std)
    assert model.problems() == []
    model.target_normalizer.std.fill_(float("nan"))
    assert model.problems() == ["target statistics hold NaN or infinite values"]


@pytest.mark.parametrize("k", [0, 2])
def test_stepper_predict_and_rollout_are_the_composition(k):
    model = _stepper(k)
    state, params = torch.randn(2, 1, 16), torch.tensor([[0.8, 0.25], [0.4, 0.5]])
    encode = lambda u: (u - 0.3) / (model.state_normalizer.std + 1e-6)  # noqa: E731
    decode = lambda u: u * (model.state_normalizer.std + 1e-6) + model.state_normalizer.mean  # noqa: E731
    with torch.no_grad():
        manual = decode(model.net.predict(encode(state), params / model.param_scale, torch.Generator().manual_seed(1)))
        torch.testing.assert_close(model.predict(state, params, torch.Generator().manual_seed(1)), manual, rtol=0, atol=0)
        torch.testing.assert_close(model(state, params, torch.Generator().manual_seed(1)), manual, rtol=0, atol=0)
        out = model.net.rollout(encode(state), 3, params / model.param_scale, torch.Generator().manual_seed(2))
        rolled = model.rollout(state, 3, params, torch.Generator().manual_seed(2))
    assert rolled.shape == (2, 3, 1, 16)
    torch.testing.assert_close(rolled, decode(out), rtol=0, atol=0)
    torch.manual_seed(3)  # the refiner's loss draws a noise level and noise from the global generator
    loss = model.loss(state, state + 0.1, params)
    torch.manual_seed(3)
    expected = model.net.loss(encode(state), encode(state + 0.1), params / model.param_scale)
    assert loss.shape == () and torch.equal(loss, expected)


def test_stepper_with_network_shares_the_normalization():
    model = _stepper()
    other = PDERefiner(**model.net.init_kwargs)
    averaged = model.with_network(other)
    assert averaged.net is other and averaged.state_normalizer is model.state_normalizer
    assert averaged.param_scale.data_ptr() == model.param_scale.data_ptr()
    assert set(model.state_dict()) == {*("net." + k for k in model.net.state_dict()), "state_normalizer.mean",
                                       "state_normalizer.std", "param_scale"}
    assert model.problems() == []
    model.param_scale[0] = 0
    assert model.problems() == ["param_scale must hold finite, non-zero numbers"]

"""PDE-Refiner (Lippe et al., NeurIPS 2023) and its MSE-trained U-Net baseline: one-step predictors for rollouts.

A one-step model maps the state ``u(t)`` (and per-trajectory parameters such as ``dt`` and ``dx``)
to ``u(t + dt)``; applied to its own output it rolls a trajectory out. Both models here use the
same conditioned U-Net (:class:`~surrogates.models.unet.UNet`) with inputs
``[u(t), estimate of u(t + dt)]`` (``2 C`` channels) and conditioning scalars
``[refinement step k, parameters...]``:

- ``num_refinement_steps = 0``: the MSE baseline. The network sees ``[u(t), 0]`` and ``k = 0``
  and is trained with the one-step MSE ``|| u(t+dt) - net([u(t), 0], 0) ||^2``.
- ``num_refinement_steps = K > 0``: PDE-Refiner. Step ``k = 0`` is the same prediction; steps
  ``k = 1 .. K`` refine it by denoising, with noise standard deviations

      sigma_k = min_noise_std ** (k / K),    k = 1 .. K

  (geometric, from ``min_noise_std^(1/K)`` down to ``min_noise_std`` at ``k = K``; ``sigma_0 = 1``
  by convention, step 0 being the pure prediction). Refinement step ``k``::

      noised   = estimate + sigma_k * eps,            eps ~ N(0, I)
      estimate = noised - sigma_k * net([u(t), noised], k)

  so the network predicts the noise (epsilon parameterization). Training draws ``k`` per sample,
  uniformly from ``{0, .., K}`` as in the paper (or ``k = 0`` with probability
  ``first_step_probability`` and ``k = 1 .. K`` uniformly otherwise): ``k = 0`` takes the MSE loss on
  ``u(t + dt)``, ``k > 0`` the loss
  ``|| eps - net([u(t), u(t+dt) + sigma_k eps], k) ||^2``, which weighs the error of the denoised
  state by ``1 / sigma_k^2`` and so makes the network model the low-amplitude (high-frequency)
  components that the MSE loss ignores. A prediction costs ``K + 1`` network evaluations.

All fields are in normalized units (the task and :class:`~surrogates.serve.rollout.RolloutSurrogate`
normalize with training statistics), so ``sigma_k`` is relative to the data's standard deviation.

Convention. ``min_noise_std`` is a standard deviation, as in the paper's pseudo-code
(its Appendix C). The authors' code (``pdearena/models/pderefiner.py``) builds a DDPM scheduler
with ``betas = [min_noise_std ** (j / K) for j = K .. 0]`` and v-prediction; DDPM betas are
variances, so its noise standard deviation at refinement step ``k`` is
``sqrt(1 - prod_{i <= K-k} (1 - beta_i))``, within 1 % of ``sqrt(min_noise_std) ** (k / K)``
(tested): its ``min_noise_std = 4e-7`` is ``min_noise_std = sqrt(4e-7) ~ 6.3e-4`` here. The
v-prediction target ``sqrt(a) eps - sqrt(1 - a) u`` differs from ``eps`` by ``O(sigma_k)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from surrogates.arguments import check_count, check_number
from surrogates.models.base import OperatorModel
from surrogates.models.unet import UNet

__all__ = ["ROLLOUT_KIND", "PDERefiner", "noise_schedule"]

ROLLOUT_KIND = "rollout"
"""``checkpoint["surrogates"]["kind"]`` of one-step models (written by :class:`surrogates.tasks.autoregressive.Autoregressive`)."""

MAX_REFINEMENT_STEPS = 1000
"""Largest ``num_refinement_steps`` (see :class:`PDERefiner`)."""

STEP_EMBEDDING_RANGE = 1000.0
"""The refinement step ``k`` enters the sinusoidal embedding as ``k * 1000 / K`` (as in the authors' code)."""


def noise_schedule(num_refinement_steps: int, min_noise_std: float) -> torch.Tensor:
    """Noise standard deviations ``sigma_k = min_noise_std ** (k / K)``, ``k = 0 .. K``, shape ``(K + 1,)``.

    ``sigma_0 = 1`` (step 0 is the plain prediction and adds no noise); ``sigma_K = min_noise_std``.
    Computed in float64.
    """
    if num_refinement_steps < 0:
        raise ValueError(f"num_refinement_steps must be >= 0, got {num_refinement_steps}")
    if not 0.0 < min_noise_std < 1.0:
        raise ValueError(f"min_noise_std must be in (0, 1), got {min_noise_std}")
    if num_refinement_steps == 0:
        return torch.ones(1, dtype=torch.float64)
    k = torch.arange(num_refinement_steps + 1, dtype=torch.float64)
    return torch.tensor(min_noise_std, dtype=torch.float64) ** (k / num_refinement_steps)


class PDERefiner(OperatorModel):
    """One-step predictor ``u(t) -> u(t + dt)`` with ``K`` denoising refinement steps (``K = 0``: MSE U-Net).

    Parameters
    ----------
    in_channels, out_channels : int
        State channels ``C`` (equal: the output is fed back as the next input). The U-Net gets
        ``2 C`` input channels: the state and the current estimate of the next state.
    n_params : int
        Per-trajectory conditioning scalars (e.g. 2 for ``dt``, ``dx``), passed already scaled to
        order one (the task divides them by their training mean); the U-Net is conditioned on
        ``1 + n_params`` scalars, the refinement step first.
    num_refinement_steps : int
        ``K``; 0 gives the MSE-trained baseline with the same network. At most :data:`MAX_REFINEMENT_STEPS`
        (the paper uses a few; every prediction runs ``K + 1`` network evaluations and the model keeps
        ``K + 1`` noise levels).
    min_noise_std : float
        ``sigma_K``, a standard deviation in normalized units (see the module docstring).
    param_embedding_scale : float
        Parameters are multiplied by this before the sinusoidal embedding (periods 1 .. 10^4), so
        that 1 % differences are resolved; positive and finite.
    first_step_probability : float or None
        Probability of drawing ``k = 0`` (the plain prediction) for a training sample; the refinement
        steps share the rest uniformly. None (default): ``1 / (K + 1)``, every step equally often, as
        in the paper. A refinement step keeps the components of its input that stand above its noise
        level, so the large-scale accuracy of a rollout is that of the ``k = 0`` prediction. A larger
        share sharpens it on a short budget but leaves the denoisers fewer samples (in the CPU
        benchmark 0.5 did not lengthen rollouts; docs/models.md).
    dim, hidden_channels, channel_multipliers, blocks_per_level, norm_groups, padding_mode, cond_channels
        The U-Net's arguments (:class:`~surrogates.models.unet.UNet`); ``padding_mode="circular"``
        for periodic data.
    n_steps_input, n_steps_output : int
        Time window: the model takes the last ``n_steps_input`` states and predicts the next
        ``n_steps_output`` ones (1 and 1: ``u(t) -> u(t + dt)``). Windows are stacked time-major on the
        channel axis, ``(B, n_steps * C, *spatial)``: the ``C`` channels of the oldest state first. The
        U-Net then takes ``(n_steps_input + n_steps_output) C`` channels and returns ``n_steps_output C``.

    Examples
    --------
    >>> model = PDERefiner(1, 1, n_params=2, num_refinement_steps=3, hidden_channels=8, channel_multipliers=[1, 2])
    >>> model.predict(torch.randn(4, 1, 64), torch.ones(4, 2)).shape
    torch.Size([4, 1, 64])
    """

    registered_name = "pde_refiner"

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        n_params: int = 0,
        num_refinement_steps: int = 3,
        min_noise_std: float = 6.3e-4,
        param_embedding_scale: float = 100.0,
        first_step_probability: float | None = None,
        dim: int = 1,
        hidden_channels: int = 32,
        channel_multipliers: Sequence[int] = (1, 2, 2, 4),
        blocks_per_level: int = 1,
        norm_groups: int = 8,
        padding_mode: str = "circular",
        cond_channels: int | None = None,
        n_steps_input: int = 1,
        n_steps_output: int = 1,
    ):
        super().__init__()
        if in_channels != out_channels:
            raise ValueError(
                f"an autoregressive model maps a state to the next state: in_channels ({in_channels}) "
                f"must equal out_channels ({out_channels})"
            )
        if n_params < 0:
            raise ValueError(f"n_params must be >= 0, got {n_params}")
        if n_steps_input < 1 or n_steps_output < 1:
            raise ValueError(f"n_steps_input and n_steps_output must be >= 1, got {n_steps_input}, {n_steps_output}")
        self.in_channels = self.out_channels = int(in_channels)
        self.n_steps_input, self.n_steps_output = int(n_steps_input), int(n_steps_output)
        self.n_params = int(n_params)
        self.num_refinement_steps = check_count("num_refinement_steps", num_refinement_steps, 0, MAX_REFINEMENT_STEPS)
        self.register_buffer(
            "sigmas", noise_schedule(self.num_refinement_steps, float(min_noise_std)).float(), persistent=False
        )
        self.param_embedding_scale = check_number("param_embedding_scale", param_embedding_scale, 0.0, low_open=True)
        if first_step_probability is not None and not 0.0 < first_step_probability <= 1.0:
            raise ValueError(f"first_step_probability must be in (0, 1], got {first_step_probability}")
        self.first_step_probability = (
            1.0 / (self.num_refinement_steps + 1) if first_step_probability is None else float(first_step_probability)
        )
        self.unet = UNet(
            (self.n_steps_input + self.n_steps_output) * self.in_channels,
            self.n_steps_output * self.out_channels,
            dim=dim,
            hidden_channels=hidden_channels,
            channel_multipliers=channel_multipliers,
            blocks_per_level=blocks_per_level,
            norm_groups=norm_groups,
            padding_mode=padding_mode,
            n_cond=1 + self.n_params,
            cond_channels=cond_channels,
        )

    @property
    def evaluations_per_step(self) -> int:
        """Network evaluations per predicted step, ``K + 1``."""
        return self.num_refinement_steps + 1

    # -- network ----------------------------------------------------------------------------------
    @property
    def window_channels(self) -> tuple[int, int]:
        """Channels of the input window and of the predicted window, ``(n_steps_input C, n_steps_output C)``."""
        return self.n_steps_input * self.in_channels, self.n_steps_output * self.out_channels

    def _check(self, state: torch.Tensor, params: torch.Tensor | None) -> torch.Tensor:
        channels = self.window_channels[0]
        if state.ndim < 3 or state.shape[1] != channels:
            what = f"{self.n_steps_input} states x {self.in_channels} channels" if self.n_steps_input > 1 else "state channels"
            raise ValueError(f"state must have shape (batch, {channels} [{what}], *spatial), got {tuple(state.shape)}")
        if self.n_params == 0:
            if params is not None and params.numel():
                raise ValueError("this model takes no parameters (n_params=0)")
            return state.new_zeros(state.shape[0], 0)
        if params is None or params.shape != (state.shape[0], self.n_params):
            got = None if params is None else tuple(params.shape)
            raise ValueError(f"params must have shape (batch, {self.n_params}), got {got}")
        return params.to(state.dtype)

    def denoiser(self, state: torch.Tensor, estimate: torch.Tensor, k: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """One network evaluation: ``net([state, estimate], [k, params])``; ``k`` of shape ``(B,)``; ``state``
        ``(B, n_steps_input C, *spatial)``, ``estimate`` and the answer ``(B, n_steps_output C, *spatial)``."""
        scale = STEP_EMBEDDING_RANGE / max(self.num_refinement_steps, 1)
        cond = torch.cat([(k.to(state.dtype) * scale)[:, None], params * self.param_embedding_scale], dim=1)
        return self.unet(torch.cat([state, estimate], dim=1), cond)

    # -- inference --------------------------------------------------------------------------------
    def predict(
        self, state: torch.Tensor, params: torch.Tensor | None = None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """The next state (normalized units), from ``K + 1`` network evaluations.

        Parameters
        ----------
        state
            ``(B, C, *spatial)``; with a time window the last ``n_steps_input`` states ``(B, n_steps_input C, *spatial)``.
        params
            ``(B, n_params)`` scaled parameters.
        generator
            Source of the refinement noise (a fixed seed gives a reproducible prediction).

        Returns
        -------
        torch.Tensor
            ``(B, C, *spatial)``; with a time window the next ``n_steps_output`` states ``(B, n_steps_output C, *spatial)``.
        """
        return self.refinement_estimates(state, params, generator)[-1]

    def refinement_estimates(
        self, state: torch.Tensor, params: torch.Tensor | None = None, generator: torch.Generator | None = None
    ) -> list[torch.Tensor]:
        """The estimate of the next state after each step ``k = 0 .. K`` (``K + 1`` tensors ``(B, n_steps_output C, *spatial)``).

        The last one is :meth:`predict`'s answer (same noise for the same generator); comparing each with
        the true next state shows what every refinement step adds.
        """
        params = self._check(state, params)
        batch = state.shape[0]
        k = torch.zeros(batch, dtype=torch.long, device=state.device)
        shape = (batch, self.window_channels[1], *state.shape[2:])
        estimates = [self.denoiser(state, state.new_zeros(shape), k, params)]
        for step in range(1, self.num_refinement_steps + 1):
            sigma = self.sigmas[step].to(state.dtype)
            noise = torch.randn(shape, generator=generator, device=state.device, dtype=state.dtype)
            noised = estimates[-1] + sigma * noise
            estimates.append(noised - sigma * self.denoiser(state, noised, k + step, params))
        return estimates

    def forward(
        self, state: torch.Tensor, params: torch.Tensor | None = None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Same as :meth:`predict`."""
        return self.predict(state, params, generator)

    def rollout(
        self,
        state: torch.Tensor,
        steps: int,
        params: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """``steps`` autoregressive predictions from ``state``: ``(B, steps, C, *spatial)``.

        ``state`` is ``(B, C, *spatial)``, or with a time window the first ``n_steps_input`` states
        ``(B, n_steps_input C, *spatial)``; every prediction gives ``n_steps_output`` states and the window
        moves on by as many (:meth:`shift_window`); the last prediction is cut to ``steps`` states.
        """
        if steps < 0:
            raise ValueError(f"steps must be >= 0, got {steps}")
        out = []
        while len(out) < steps:
            predicted = self.predict(state, params, generator)
            out.extend(self.states(predicted))
            state = self.shift_window(state, predicted)
        if not out:
            return state.new_empty(state.shape[0], 0, self.in_channels, *state.shape[2:])
        return torch.stack(out[:steps], dim=1)

    def states(self, window: torch.Tensor) -> list[torch.Tensor]:
        """A time-major window ``(B, n C, *spatial)`` as its ``n`` states ``(B, C, *spatial)`` (views)."""
        return list(window.split(self.in_channels, dim=1)) if window.shape[1] != self.in_channels else [window]

    def shift_window(self, window: torch.Tensor, predicted: torch.Tensor) -> torch.Tensor:
        """The input window after a prediction: the last ``n_steps_input`` states of ``[window, predicted]``.

        ``window`` ``(B, n_steps_input C, *spatial)``, ``predicted`` ``(B, n_steps_output C, *spatial)``.
        """
        keep = self.window_channels[0]
        if predicted.shape[1] >= keep:  # 1 -> 1: the prediction itself, as before windows
            return predicted if predicted.shape[1] == keep else predicted[:, -keep:]
        return torch.cat([window[:, predicted.shape[1] :], predicted], dim=1)

    # -- training ---------------------------------------------------------------------------------
    def _draw_steps(self, batch: int, generator: torch.Generator | None, device) -> torch.Tensor:
        """Refinement step of each training sample, ``(batch,)`` int64 in ``[0, K]``."""
        K = self.num_refinement_steps
        if abs(self.first_step_probability - 1.0 / (K + 1)) < 1e-12:  # the paper's uniform draw
            return torch.randint(0, K + 1, (batch,), generator=generator, device=device)
        # on the generator's device (a CUDA generator cannot sample CPU probabilities)
        where = generator.device if generator is not None else device
        probabilities = torch.full((K + 1,), (1.0 - self.first_step_probability) / max(K, 1), device=where)
        probabilities[0] = self.first_step_probability if K > 0 else 1.0
        k = torch.multinomial(probabilities, batch, replacement=True, generator=generator)
        return k.to(device)

    def loss(
        self,
        state: torch.Tensor,
        target: torch.Tensor,
        params: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """The training objective on a batch of pairs (normalized units), a scalar.

        ``state`` ``(B, n_steps_input C, *spatial)``, ``target`` ``(B, n_steps_output C, *spatial)`` (``C`` channels each
        without a window).

        ``k`` per sample (``U{0, .., K}`` by default, see ``first_step_probability``); ``k = 0``: MSE
        between ``net([state, 0], 0)`` and the target; ``k > 0``: MSE between
        ``net([state, target + sigma_k eps], k)`` and ``eps``. With ``K = 0`` this is the plain one-step MSE.
        """
        params = self._check(state, params)
        batch = state.shape[0]
        k = self._draw_steps(batch, generator, state.device)
        noise = torch.randn(target.shape, generator=generator, device=target.device, dtype=target.dtype)
        shape = (batch,) + (1,) * (target.ndim - 1)
        refine = (k > 0).view(shape)
        sigma = self.sigmas.to(target.dtype)[k].view(shape)
        estimate = torch.where(refine, target + sigma * noise, torch.zeros_like(target))
        goal = torch.where(refine, noise, target)
        return F.mse_loss(self.denoiser(state, estimate, k, params), goal)


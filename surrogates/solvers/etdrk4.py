"""Exponential time differencing Runge-Kutta 4 (Cox & Matthews 2002) for ``v' = L v + N(v)`` with diagonal ``L``.

The stiff linear part is integrated exactly through ``exp(L dt)``; the nonlinear part is treated
explicitly with fourth-order accuracy. The coefficients, ``phi``-functions of ``L dt`` suffer from
cancellation for small ``|L dt|``; following Kassam & Trefethen (2005) they are evaluated as means
over a circle of radius one around each ``L dt`` in the complex plane (Cauchy integral formula),
which is accurate for every ``L dt`` including zero.

Arrays are batched: the state has shape ``(n, k)`` (samples, modes) or any shape that ``L``
broadcasts against.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Nonlinear = Callable[[np.ndarray], np.ndarray]


class ETDRK4:
    """ETDRK4 coefficients for a fixed diagonal ``L`` and time step, and the step that uses them.

    Parameters
    ----------
    linear
        Diagonal of ``L``, real or complex, shape ``(k,)`` or ``(n, k)`` (per-sample operators).
    dt
        Time step: a positive number, or an array of positive steps that broadcasts against
        ``linear`` (e.g. shape ``(n, 1)`` for one step per sample of an ``(n, k)`` operator).
    n_contour
        Points on the contour for the coefficients (Kassam & Trefethen use 32; 32-64 is plenty).

    Examples
    --------
    Heat equation plus a nonlinearity ``N`` in Fourier space, modes ``k`` and states ``v0`` of shape ``(n, k)``::

        stepper = ETDRK4(-nu * (2 * np.pi * k) ** 2, dt=1e-3)
        v = stepper.integrate(v0, N, n_steps=1000)
    """

    def __init__(self, linear: np.ndarray, dt: float | np.ndarray, n_contour: int = 32):
        steps = np.asarray(dt, dtype=np.float64)
        if not (np.all(np.isfinite(steps)) and np.all(steps > 0)):
            raise ValueError(f"dt must be positive, got {dt}")
        linear = np.asarray(linear)
        # a scalar step stays a float; per-sample steps keep their shape and broadcast with ``linear``
        self.dt = float(steps) if steps.ndim == 0 else steps
        self.linear = linear
        z = self.dt * linear
        self.E = np.exp(z)
        self.E2 = np.exp(z / 2)
        self.Q, self.f1, self.f2, self.f3 = (self.dt * c for c in _coefficients(z, n_contour))
        if not np.iscomplexobj(linear):
            # for real L the contour means are real up to round-off
            self.Q, self.f1, self.f2, self.f3 = (c.real for c in (self.Q, self.f1, self.f2, self.f3))

    def select(self, index: np.ndarray) -> "ETDRK4":
        """A stepper whose sample ``i`` uses row ``index[i]`` of a 2D ``linear`` (shares nothing mutable).

        Lets a batch with few distinct operators (e.g. a handful of viscosities) compute the
        contour integrals once per distinct operator.
        """
        out = object.__new__(ETDRK4)
        per_row = isinstance(self.dt, np.ndarray) and self.dt.ndim == self.E.ndim and self.dt.shape[0] > 1
        out.dt = self.dt[index] if per_row else self.dt  # per-row steps follow their rows
        for name in ("linear", "E", "E2", "Q", "f1", "f2", "f3"):
            setattr(out, name, getattr(self, name)[index])
        return out

    def step(self, v: np.ndarray, nonlinear: Nonlinear) -> np.ndarray:
        """Advance ``v`` (shape broadcasting with ``linear``) by one step ``dt``; ``nonlinear(v)`` has ``v``'s shape."""
        Nv = nonlinear(v)
        e2v = self.E2 * v
        a = e2v + self.Q * Nv
        Na = nonlinear(a)
        b = e2v + self.Q * Na
        Nb = nonlinear(b)
        c = self.E2 * a + self.Q * (2.0 * Nb - Nv)
        Nc = nonlinear(c)
        return self.E * v + self.f1 * Nv + self.f2 * (2.0 * (Na + Nb)) + self.f3 * Nc

    def integrate(self, v: np.ndarray, nonlinear: Nonlinear, n_steps: int) -> np.ndarray:
        """Take ``n_steps`` steps from ``v``; returns the final state."""
        for _ in range(n_steps):
            v = self.step(v, nonlinear)
        return v


def _coefficients(z: np.ndarray, n_contour: int) -> tuple[np.ndarray, ...]:
    """Dimensionless ``Q / dt, f1 / dt, f2 / dt, f3 / dt`` for ``z = L dt`` by contour means; shapes of ``z``, complex."""
    if n_contour < 8:
        raise ValueError(f"n_contour must be >= 8, got {n_contour}")
    # full circle, offset by half a step so that no point lands on the real axis (where z + r may vanish)
    r = np.exp(2j * np.pi * (np.arange(n_contour) + 0.5) / n_contour)
    lr = z[..., None] + r
    e = np.exp(lr)
    q = np.mean((np.exp(lr / 2) - 1.0) / lr, axis=-1)
    f1 = np.mean((-4.0 - lr + e * (4.0 - 3.0 * lr + lr**2)) / lr**3, axis=-1)
    f2 = np.mean((2.0 + lr + e * (lr - 2.0)) / lr**3, axis=-1)
    f3 = np.mean((-4.0 - 3.0 * lr - lr**2 + e * (4.0 - lr)) / lr**3, axis=-1)
    return q, f1, f2, f3

"""Preconditioners for :func:`surrogates.solvers.pcg.pcg`, all behind :class:`Preconditioner`."""

from surrogates.solvers.preconditioners.base import Preconditioner

__all__ = ["Preconditioner"]

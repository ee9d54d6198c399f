"""Neural operators, one file per architecture; each records its constructor arguments."""

from surrogates.models.base import OperatorModel, build_model
from surrogates.models.fno import FNO

__all__ = ["FNO", "OperatorModel", "build_model"]

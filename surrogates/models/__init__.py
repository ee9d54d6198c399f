"""Neural operators, one file per architecture; each records its constructor arguments."""

from surrogates.models.base import OperatorModel
from surrogates.models.fno import FNO
from surrogates.models.mg_tfno import MGTFNO
from surrogates.models.mgno import MgNO
from surrogates.models.pde_refiner import PDERefiner
from surrogates.models.tfno import TFNO
from surrogates.models.unet import UNet

__all__ = ["FNO", "MGTFNO", "MgNO", "OperatorModel", "PDERefiner", "TFNO", "UNet"]

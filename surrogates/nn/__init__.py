"""Reusable layers of the neural operators."""

from surrogates.nn.embeddings import GridEmbedding, grid_coordinates
from surrogates.nn.multigrid import VCycle
from surrogates.nn.normalization import Normalizer
from surrogates.nn.spectral_conv import SpectralConv
from surrogates.nn.unet_blocks import ConditionEmbedding, ResidualBlock, SinusoidalEmbedding

__all__ = [
    "ConditionEmbedding",
    "GridEmbedding",
    "Normalizer",
    "ResidualBlock",
    "SinusoidalEmbedding",
    "SpectralConv",
    "VCycle",
    "grid_coordinates",
]

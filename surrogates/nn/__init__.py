"""Reusable layers of the neural operators."""

from surrogates.nn.embeddings import GridEmbedding, grid_coordinates
from surrogates.nn.spectral_conv import SpectralConv

__all__ = ["GridEmbedding", "SpectralConv", "grid_coordinates"]

"""Normalization statistics streamed over the training split.

:class:`Normalizer` itself lives in :mod:`surrogates.nn.normalization` (models hold it and may not
import ``data``); it is re-exported here so that ``from surrogates.data.normalization import
Normalizer`` keeps working.
"""

from __future__ import annotations

import numpy as np
from torch.utils.data import DataLoader, Dataset

from surrogates.nn.normalization import Normalizer

__all__ = ["ChannelMoments", "Normalizer", "channel_statistics"]


def channel_statistics(
    dataset: Dataset,
    key: str,
    batch_size: int = 64,
    num_workers: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation of ``dataset[i][key]``, streamed in batches.

    Batches are reduced in float64 and merged by :class:`ChannelMoments` (Chan et al.'s parallel update),
    which stays accurate when the mean is large compared to the spread.

    Parameters
    ----------
    dataset
        Yields dicts with ``key`` -> tensor of shape ``(C, *spatial)``, e.g. a
        :class:`~surrogates.data.dataset.FieldDataset` (or a ``Subset`` of one).
    key
        ``"x"`` (inputs) or ``"y"`` (targets).
    batch_size, num_workers
        Of the DataLoader used to stream the data.

    Returns
    -------
    mean, std : np.ndarray
        float64 arrays of shape ``(C,)``; ``std`` is the population standard deviation (``ddof=0``,
        like ``numpy.std``) over all samples and grid points.
    """
    if len(dataset) == 0:
        raise ValueError("cannot compute statistics of an empty dataset")
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    moments = ChannelMoments()
    for batch in loader:
        values = batch[key]
        if values.ndim < 2:
            raise ValueError(f"dataset[i][{key!r}] must have shape (C, *spatial), got {tuple(values.shape[1:])}")
        moments.add(values.transpose(0, 1).reshape(values.shape[1], -1).numpy())
    return moments.mean, moments.std


class ChannelMoments:
    """Per-channel count, mean and sum of squared deviations ``M2``, merged block by block in float64.

    Each block is reduced in two passes (its mean, then the squares of the deviations from it) and
    merged with Chan, Golub and LeVeque's update ``M2 = M2_a + M2_b + delta^2 n_a n_b / n``. No
    ``E[x^2] - mean^2`` is ever formed: for a field of 3e4 +- 0.01 that difference cancels 17 of the
    float64 digits it is made of, and the standard deviation came out wrong in the fourth digit.
    """

    def __init__(self) -> None:
        self.count = 0
        self._mean: np.ndarray | None = None
        self._m2: np.ndarray | None = None

    def add(self, values: np.ndarray) -> None:
        """Merge a block of shape ``(C, n)`` (any float dtype; reduced in float64)."""
        values = np.asarray(values, dtype=np.float64)
        n = values.shape[1]
        if n == 0:
            return
        mean = values.mean(axis=1)
        m2 = ((values - mean[:, None]) ** 2).sum(axis=1)
        if self._mean is None or self._m2 is None:
            self.count, self._mean, self._m2 = n, mean, m2
            return
        if mean.shape != self._mean.shape:
            raise ValueError(f"a block of {mean.shape[0]} channels after blocks of {self._mean.shape[0]}")
        total = self.count + n
        delta = mean - self._mean
        self._mean = self._mean + delta * (n / total)
        self._m2 = self._m2 + m2 + delta**2 * (self.count * n / total)
        self.count = total

    @property
    def mean(self) -> np.ndarray:
        """Per-channel mean, float64 ``(C,)``."""
        if self._mean is None:
            raise ValueError("no values added")
        return self._mean

    @property
    def std(self) -> np.ndarray:
        """Per-channel population standard deviation (``ddof=0``, like ``numpy.std``), float64 ``(C,)``."""
        if self._m2 is None:
            raise ValueError("no values added")
        return np.sqrt(self._m2 / self.count)

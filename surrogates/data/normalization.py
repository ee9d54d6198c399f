"""Normalization statistics streamed over the training split.

:class:`Normalizer` itself lives in :mod:`surrogates.nn.normalization` (models hold it and may not
import ``data``); it is re-exported here so that ``from surrogates.data.normalization import
Normalizer`` keeps working.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from surrogates.nn.normalization import Normalizer

__all__ = ["Normalizer", "channel_statistics"]


def channel_statistics(
    dataset: Dataset,
    key: str,
    batch_size: int = 64,
    num_workers: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation of ``dataset[i][key]``, streamed in batches.

    Batches are reduced in float64 and merged with Chan et al.'s parallel update of (count, mean,
    sum of squared deviations), which stays accurate when the mean is large compared to the spread.

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
    count = 0
    mean: np.ndarray | None = None
    m2: np.ndarray | None = None
    for batch in loader:
        values = batch[key].to(torch.float64)
        if values.ndim < 2:
            raise ValueError(f"dataset[i][{key!r}] must have shape (C, *spatial), got {tuple(values.shape[1:])}")
        flat = values.transpose(0, 1).reshape(values.shape[1], -1).numpy()
        n = flat.shape[1]
        batch_mean = flat.mean(axis=1)
        batch_m2 = ((flat - batch_mean[:, None]) ** 2).sum(axis=1)
        if mean is None:
            count, mean, m2 = n, batch_mean, batch_m2
            continue
        total = count + n
        delta = batch_mean - mean
        mean = mean + delta * (n / total)
        m2 = m2 + batch_m2 + delta**2 * (count * n / total)
        count = total
    assert mean is not None and m2 is not None
    return mean, np.sqrt(m2 / count)


"""Which split (train, val, test) each sample of an imported source goes to."""

from __future__ import annotations

import numpy as np

from surrogates.data.importers.plan import ImportDataError, Plan
from surrogates.data.importers.settings import ImportSettings
from surrogates.data.shards import SPLITS


def assign_splits(plan: Plan, settings: ImportSettings) -> list[np.ndarray]:
    """Per part, the split index (0 train, 1 val, 2 test) of every sample.

    Splits of the source are kept; a split the source lacks (all of them when it has none) is drawn from
    its training samples with ``val_fraction`` / ``test_fraction`` of them (at least one sample for a fraction
    above 0), by a permutation seeded with ``seed``.

    Raises
    ------
    ImportDataError
        When the source has no training samples, or too few to draw the asked splits and keep one for training:
        a split asked for is never silently empty.
    """
    ids = {name: i for i, name in enumerate(SPLITS)}
    assignment = [np.full(part.n_samples, ids.get(part.split or "train", 0), dtype=np.int8) for part in plan.parts]
    present = {part.split or "train" for part in plan.parts if part.n_samples}
    if not present:
        raise ImportDataError("the source holds no samples (a sample dim of length 0); expected at least one")
    if "train" not in present:
        raise ImportDataError(
            f"the source has no training samples (its splits: {', '.join(sorted(present))}); expected a train/ folder "
            "or file, or files without a split to draw val and test from"
        )
    missing = [split for split in ("val", "test") if split not in present]
    if not missing:
        return assignment
    offsets = np.cumsum([0] + [part.n_samples for part in plan.parts])
    pool = np.concatenate([offsets[k] + np.flatnonzero(a == 0) for k, a in enumerate(assignment)]) if assignment else np.zeros(0)
    n = pool.size
    fractions = {"val": settings.val_fraction, "test": settings.test_fraction}
    counts = {split: int(round(fractions[split] * n)) for split in missing}
    for split in missing:
        if fractions[split] > 0 and counts[split] == 0:
            counts[split] = 1  # a tiny source still gets a sample to validate / test on, never an empty split
    if n - sum(counts.values()) < 1:
        asked = ", ".join(f"{split}_fraction={fractions[split]} ({counts[split]})" for split in missing if counts[split])
        raise ImportDataError(
            f"the source has {n} training sample(s): too few to split off {asked} and keep one for training; "
            f"expected at least {sum(counts.values()) + 1}, or set "
            f"{' '.join(f'{split}_fraction=0' for split in missing if counts[split])} to import without it"
        )
    order = np.random.default_rng(settings.seed).permutation(n)
    start = 0
    for split in ("test", "val"):
        if split not in counts:
            continue
        chosen = pool[order[start : start + counts[split]]]
        start += counts[split]
        for k in range(len(plan.parts)):
            local = chosen[(chosen >= offsets[k]) & (chosen < offsets[k + 1])] - offsets[k]
            assignment[k][local] = ids[split]
    return assignment

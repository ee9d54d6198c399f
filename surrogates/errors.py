"""Errors shared across layers (imports nothing from the package, so every layer may raise them)."""

from __future__ import annotations

from pathlib import Path


class CheckpointError(ValueError):
    """A model file (training checkpoint, reduced model, learned preconditioner) cannot be used.

    The message names the file and the problem: unreadable, unknown model name, newer format
    version, constructor arguments that are not plain data, missing key, shape mismatch.

    Parameters
    ----------
    path
        The file, or None when the problem is found in data not yet tied to a file.
    problem
        What is wrong, in words.
    """

    def __init__(self, path: str | Path | None, problem: str):
        self.path = Path(path) if path is not None else None
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path is not None else problem)

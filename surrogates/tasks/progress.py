"""`RunProgress`: one line per epoch about the whole run (epoch i of n, elapsed, estimated time left).

Lightning's progress bar shows the current epoch; a long run also needs to say when it will end.
"""

from __future__ import annotations

import time
from datetime import timedelta

import lightning as L

__all__ = ["RunProgress", "format_seconds"]


def format_seconds(seconds: float) -> str:
    """``0:07:40`` (hours:minutes:seconds, rounded to the second)."""
    return str(timedelta(seconds=round(max(seconds, 0.0))))


class RunProgress(L.Callback):
    """Print ``epoch i/n  elapsed h:mm:ss  about h:mm:ss left`` at the end of every training epoch (rank zero).

    The time left is the mean time of the epochs of this process so far times the epochs left (an
    estimate: validation every few epochs, early stopping and a resumed run's first epoch skew it).
    """

    def __init__(self) -> None:
        self._start: float | None = None
        self._first_epoch = 0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.monotonic()
        self._first_epoch = trainer.current_epoch

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._start is None or not trainer.is_global_zero or trainer.sanity_checking:
            return
        line = self.line(trainer.current_epoch + 1, trainer.max_epochs, time.monotonic() - self._start,
                         trainer.current_epoch + 1 - self._first_epoch)
        if line:
            from tqdm import tqdm

            tqdm.write(line)  # above the progress bar, not through it

    @staticmethod
    def line(done: int, total: int | None, elapsed: float, epochs_here: int) -> str:
        """The line for ``done`` epochs of ``total`` (-1 or None: unbounded), ``elapsed`` seconds for ``epochs_here``."""
        if total is None or total < 0:
            return f"epoch {done}  elapsed {format_seconds(elapsed)}"
        left = elapsed / max(epochs_here, 1) * max(total - done, 0)
        return f"epoch {done}/{total}  elapsed {format_seconds(elapsed)}  about {format_seconds(left)} left"

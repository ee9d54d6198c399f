"""User errors in one line: every entry point reports a bad input (data, checkpoint, config value) as
``surrogates-<command>: error: <message>`` on stderr and exits with status 2, instead of a traceback
through Hydra and Lightning. ``HYDRA_FULL_ERROR=1`` (or ``verbose=true`` on the command line) shows the
traceback; Ctrl-C prints one line and exits with 130. A constructor's error that Hydra's ``instantiate`` wraps
(``data.batch_size=0``) is reported the same way, naming the config node, and so is Lightning's
``MisconfigurationException`` (``trainer=gpu`` without a GPU). Running out of memory (numpy's ``MemoryError``, torch's
CPU allocator or ``torch.OutOfMemoryError``) also ends in one line, with exit status 1, since what to change
(a smaller batch or block) is the user's to choose. A command line that Hydra cannot compose (an option name
with a typo, ``pde=darcyy``, ``model=fnoo``, a malformed override) ends the same way, before anything runs
(:func:`report_config_errors`).
"""

from __future__ import annotations

import difflib
import os
import re
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from hydra.errors import ConfigCompositionException, InstantiationException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

__all__ = [
    "FAILED_SWEEP_JOBS", "JOB_ERROR_FILE", "USER_ERRORS", "config_error_line", "conversion_error_line", "is_out_of_memory", "is_user_error", "report_config_errors", "report_user_errors",
    "sweep_job", "user_error_of",
]

USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError, NotADirectoryError, OmegaConfBaseException)
"""What a user's input causes: bad or missing data and checkpoints (``DatasetFileError``, ``CheckpointError``
are ``ValueError`` s), invalid config values, missing mandatory keys. A ``ValueError`` from a bug is shown the
same way; ``HYDRA_FULL_ERROR=1`` brings its traceback back."""


_CPU_ALLOCATOR_FAILURE = "DefaultCPUAllocator: can't allocate memory"
"""How torch's CPU allocator words a failed allocation (a ``RuntimeError``, not a ``MemoryError``)."""


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is a failed memory allocation: numpy's ``MemoryError``, torch's ``OutOfMemoryError``
    (GPU) or its CPU allocator's ``RuntimeError``."""
    if isinstance(error, MemoryError):
        return True
    torch = sys.modules.get("torch")  # only a process that imported torch can raise its errors
    torch_oom = getattr(torch, "OutOfMemoryError", None) or getattr(getattr(torch, "cuda", None), "OutOfMemoryError", None)
    if isinstance(torch_oom, type) and isinstance(error, torch_oom):
        return True
    return isinstance(error, RuntimeError) and _CPU_ALLOCATOR_FAILURE in str(error)


def is_user_error(error: BaseException) -> bool:
    """Whether ``error`` is one of :data:`USER_ERRORS` or Lightning's ``MisconfigurationException`` (``trainer=gpu``
    on a machine without one), looked up only in a process that imported Lightning (the service does not)."""
    if isinstance(error, USER_ERRORS):
        return True
    fabric = sys.modules.get("lightning.fabric.utilities.exceptions")
    misconfiguration = getattr(fabric, "MisconfigurationException", None)
    return isinstance(misconfiguration, type) and isinstance(error, misconfiguration)


_TARGET = re.compile(r"target '([^']+)'")
_FULL_KEY = re.compile(r"full_key: (\S+)")


def user_error_of(error: BaseException) -> tuple[BaseException, str] | None:
    """The user error behind ``error`` and where it arose, or ``None`` when ``error`` is not one.

    Hydra's ``instantiate`` wraps a constructor's ``ValueError`` (``data.batch_size=0``, ``model.modes=0``)
    in an ``InstantiationException`` whose text spans several lines; the constructor's error is the
    user's, reported with the config node and class it came from (``data (...FieldDataModule)``).
    """
    if is_user_error(error):
        return error, ""
    cause = error.__cause__
    if not isinstance(error, InstantiationException) or cause is None or not is_user_error(cause):
        return None
    target, key = _TARGET.search(str(error)), _FULL_KEY.search(str(error))
    where = " ".join(part for part in (key and key[1], target and f"({target[1]})") if part)
    return cause, f"{where}: " if where else ""


_CONVERSIONS = (
    (re.compile(r"invalid literal for int\(\) with base \d+: '(.*)'"), "an integer"),
    (re.compile(r"could not convert string to float: '(.*)'"), "a number"),
)
"""Python's messages for a string that ``int()`` or ``float()`` cannot read, and what was expected."""


def _options_with_value(node: Any, value: str, prefix: str) -> list[str]:
    """The dotted keys under ``node`` whose value (resolved where it can be) is the string ``value``."""
    found: list[str] = []
    if not isinstance(node, DictConfig):
        return found
    for key in node.keys():
        name = f"{prefix}.{key}" if prefix else str(key)
        if prefix == "" and key == "hydra":
            continue
        try:
            child = node[key]
        except Exception:  # an interpolation that cannot resolve, a missing value: not the one
            continue
        if isinstance(child, DictConfig):
            found += _options_with_value(child, value, name)
        elif isinstance(child, str) and child == value:
            found.append(name)
    return found


def conversion_error_line(cause: BaseException, cfg: Any, where: str = "") -> str | None:
    """``data.n_train must be an integer, got 'abc'`` for a constructor's ``int('abc')`` (or ``float``), or ``None``.

    Python's message names the value, not the option: the option is found in ``cfg`` as the key holding that
    string, under the config node the error came from (``where``, ``data (...)``) when known, else anywhere.
    ``None`` when the error is no such conversion or no single option holds the value.
    """
    if not isinstance(cause, ValueError) or not isinstance(cfg, DictConfig):
        return None
    for pattern, expected in _CONVERSIONS:
        match = pattern.fullmatch(str(cause).strip())
        if match is None:
            continue
        node_key = where.split(" ")[0].rstrip(":") if where else ""
        try:
            node = OmegaConf.select(cfg, node_key) if node_key else cfg
        except Exception:
            node = None
        keys = _options_with_value(node, match[1], node_key) if node is not None else []
        if len(keys) != 1:
            return None
        return f"{keys[0]} must be {expected}, got {match[1]!r}"
    return None


def _verbose(cfg: Any) -> bool:
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        return True
    try:
        return bool(isinstance(cfg, DictConfig) and cfg.get("verbose", False))
    except OmegaConfBaseException:
        return False


JOB_ERROR_FILE = "error.txt"
"""Where a failed job of a sweep that goes on (``surrogates-train -m``) leaves its error line, in its own folder."""

FAILED_SWEEP_JOBS: list[str] = []
"""The lines of this process's sweep jobs that failed and let the sweep go on (:func:`report_user_errors`)."""


def sweep_job() -> tuple[int, list[str], Path] | None:
    """This job's number, overrides and folder when it is one job of a Hydra multirun (``-m``, Optuna); else ``None``."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hydra_cfg = HydraConfig.get()
        if hydra_cfg.mode != RunMode.MULTIRUN:
            return None
        return int(hydra_cfg.job.num), list(hydra_cfg.overrides.task), Path(hydra_cfg.runtime.output_dir)
    except (ImportError, ValueError, AttributeError, TypeError):  # not under Hydra
        return None


def report_user_errors(
    command: str, job: Callable[[DictConfig], Any], cfg: DictConfig, *, sweep_goes_on: bool = False,
) -> Any:
    """``job(cfg)``, ending a user error with one line on stderr and exit status 2 (out of memory: 1, Ctrl-C: 130).

    Called inside each ``@hydra.main`` function (not as a decorator, so that Hydra still sees the
    entry point's own module: its job name and log file).

    With ``sweep_goes_on``, a job of a multirun that fails this way does not end the whole sweep: its line names
    the job (number and overrides), is kept in ``<job folder>/error.txt`` for the sweep's summary
    (:class:`surrogates.cli.sweeps.SweepSummary`, which lists the failed jobs and sets the exit status), and the
    job returns ``None`` (Optuna records a failed trial).
    """
    in_sweep = sweep_job() if sweep_goes_on else None
    if in_sweep is not None:
        (in_sweep[2] / JOB_ERROR_FILE).unlink(missing_ok=True)  # a rerun into the folder
    try:
        return job(cfg)
    except Exception as error:
        found = user_error_of(error)
        if (found is None and not is_out_of_memory(error)) or _verbose(cfg):
            raise
        if found is not None:
            cause, where = found
            message = " ".join(str(cause).split()) or type(cause).__name__
            named = conversion_error_line(cause, cfg, where)
            if named is not None:
                where, message = "", named
            line, status = f"{where}{message}", 2
        else:
            detail = " ".join(str(error).split())[:300] or type(error).__name__
            line = (f"out of memory ({detail}); ask for less at once, e.g. a smaller data.batch_size, "
                    "resolution or chunk_bytes, or fewer loader workers")
            status = 1
        if in_sweep is not None:
            number, overrides, folder = in_sweep
            folder.mkdir(parents=True, exist_ok=True)
            (folder / JOB_ERROR_FILE).write_text(line + "\n")
            FAILED_SWEEP_JOBS.append(line)
            print(f"{command}: error: job {number} ({' '.join(overrides)}) failed: {line}; the sweep goes on "
                  "(HYDRA_FULL_ERROR=1 shows the traceback)", file=sys.stderr)
            return None
        print(f"{command}: error: {line} (HYDRA_FULL_ERROR=1 shows the traceback)", file=sys.stderr)
        sys.exit(status)
    except KeyboardInterrupt:
        if _verbose(cfg):
            raise
        print(f"{command}: interrupted", file=sys.stderr)
        sys.exit(130)


COMMANDS = {
    "generate": "surrogates-generate", "train": "surrogates-train", "evaluate": "surrogates-evaluate",
    "reduce": "surrogates-reduce", "serve": "surrogates-serve", "import_data": "surrogates-import",
}
"""Each entry module's command name (``python -m surrogates.cli.<module>`` runs the same command)."""


def _command_name() -> str:
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    return COMMANDS.get(Path(name).stem, name or "surrogates")


def _suggestion(name: str, choices: Iterable[Any], prefix: str = "") -> str:
    """`` (did you mean <prefix><closest>?)`` for the choice closest to ``name``, or nothing when none is close."""
    close = difflib.get_close_matches(name, [str(choice) for choice in choices], n=1, cutoff=0.6)
    return f" (did you mean {prefix}{close[0]}?)" if close else ""


_MISSING_OPTION = re.compile(r"Could not find '([^']+)'")


def config_error_line(error: BaseException) -> str:
    """One line for a command line Hydra cannot compose: the option, the value and what is allowed."""
    if isinstance(error, MissingConfigException) and error.options and _MISSING_OPTION.search(str(error)):
        group, _, value = _MISSING_OPTION.search(str(error))[1].rpartition("/")
        options = sorted(error.options)
        return f"{group}={value}: no such {group}{_suggestion(value, options)}; {group} is one of {', '.join(options)}"
    if isinstance(error, OverrideParseException):  # a malformed override: Hydra's grammar names the token
        message = " ".join(re.split(r"\s*See https://", str(error))[0].split())
        return f"cannot read {error.override!r}: {message}; overrides are key=value (docs/configs.md)"
    cause = error.__cause__
    key = getattr(cause, "full_key", None) or getattr(cause, "key", None)
    message = str(cause).splitlines()[0] if cause is not None and str(cause) else ""
    if key and "not in struct" in message:  # an option name that does not exist (a typo)
        parent = getattr(cause, "parent_node", None)
        known = list(parent.keys()) if hasattr(parent, "keys") else []
        prefix, _, leaf = str(key).rpartition(".")
        hint = _suggestion(leaf, known, f"{prefix}." if prefix else "")
        return f"{key}: no such option{hint}; --cfg job lists the options, +{key}=... adds a new one"
    text = " ".join(str(error).split())
    if cause is not None and message:
        text = f"{text}: {' '.join(str(cause).split())}"
    return text or type(error).__name__


def report_config_errors(run_and_report: Callable[[Callable[[], Any]], Any]) -> Callable[[Callable[[], Any]], Any]:
    """Hydra's ``run_and_report``, ending a config that cannot be composed with one line on stderr and exit status 2.

    Hydra prints such errors over several lines (the config search path included) and exits with status 1;
    ``HYDRA_FULL_ERROR=1`` keeps Hydra's own report and traceback.
    """

    def guarded_run_and_report(func: Callable[[], Any]) -> Any:
        def guarded() -> Any:
            try:
                return func()
            except (ConfigCompositionException, OverrideParseException) as error:
                if os.environ.get("HYDRA_FULL_ERROR") == "1":
                    raise
                print(f"{_command_name()}: error: {config_error_line(error)}", file=sys.stderr)
                sys.exit(2)
            except Exception as error:
                # a sweeper that gives up after failed jobs (Optuna, with no completed trial to name as the best):
                # the jobs' own lines said why, its error is one more line, not a traceback
                if not FAILED_SWEEP_JOBS or os.environ.get("HYDRA_FULL_ERROR") == "1":
                    raise
                message = " ".join(str(error).split()) or type(error).__name__
                print(f"{_command_name()}: error: the sweep stopped after {len(FAILED_SWEEP_JOBS)} failed job(s), each "
                      f"reported above and in its folder's {JOB_ERROR_FILE} (the sweeper: {message})", file=sys.stderr)
                sys.exit(1)

        return run_and_report(guarded)

    guarded_run_and_report.__wrapped__ = run_and_report  # type: ignore[attr-defined]
    return guarded_run_and_report

"""Every command line of the README and docs/ for the scripts besides training composes as written.

``surrogates-train`` lines are checked in ``test_experiments.py`` (and each experiment runs there);
this covers ``surrogates-generate``, ``-evaluate``, ``-reduce``, ``-serve`` and ``-import``: a renamed
option or config group in ``conf/`` fails here instead of in a user's shell. What the commands then do
is tested by each script's own tests at tiny sizes.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# script -> its primary config in conf/
CONFIG_OF = {"generate": "generate", "evaluate": "evaluate", "reduce": "reduce", "serve": "serve", "import": "import"}
# an optional prompt and environment assignments (OMP_NUM_THREADS=1) before the command
COMMAND = re.compile(r"^\s*(?:\$\s+)?(?:[A-Z_]+=\S+\s+)*(?:\.venv/bin/)?surrogates-(" + "|".join(CONFIG_OF) + r")\s+(.*)$")


def documented_commands() -> list[tuple[str, str, list[str]]]:
    """``(where, script, arguments)`` of each documented command line (a trailing backslash continues it)."""
    found = []
    for path in DOCS:
        lines = iter(path.read_text().splitlines())
        for line in lines:
            match = COMMAND.match(line)
            if not match:
                continue
            text = match.group(2)
            while text.rstrip().endswith("\\"):
                text = text.rstrip()[:-1] + " " + next(lines, "").strip()
            text = re.sub(r"<[^<>]*>", "placeholder", text.split(" #")[0])
            found.append((f"{path.name}: {line.strip()}", match.group(1), shlex.split(text)))
    return found


def _overrides(args: list[str]) -> list[str]:
    """The overrides to compose: a sweep's first point; launcher and Hydra settings left to Hydra's own
    tests (and tests/cli/test_launchers.py); placeholders such as ``mu=[...]`` left out, and ``<run>``
    filled in (the reader replaces it; the shell would read ``<`` as a redirection)."""
    sweep = "-m" in args
    kept = []
    for arg in args:
        if arg in ("-m", "--multirun") or arg.startswith(("hydra/", "hydra.", "+hydra.")) or "..." in arg:
            continue
        if sweep and re.match(r"^[\w.+/]+=\s*\w+\(", arg):  # a sweep function, e.g. shard=range(0,8)
            continue
        kept.append(arg.split(",")[0] if sweep and not arg.lstrip("+").split("=", 1)[1].startswith(("[", "{")) else arg)
    return kept


COMMANDS = documented_commands()


def test_the_readme_documents_every_script():
    scripts = {script for where, script, _ in COMMANDS if where.startswith("README.md")}
    assert scripts == set(CONFIG_OF), sorted(set(CONFIG_OF) - scripts)


@pytest.mark.parametrize("where, script, args", COMMANDS, ids=[where for where, _, _ in COMMANDS])
def test_documented_command_composes(where, script, args, compose_cfg):
    cfg = compose_cfg(CONFIG_OF[script], _overrides(args))
    for arg in _overrides(args):
        key = arg.lstrip("+").split("=", 1)[0]
        if "/" not in key and "." not in key:  # a top-level option: it must reach the job's config as written
            assert key in cfg, f"{where}: {key} is not an option of conf/{CONFIG_OF[script]}.yaml"

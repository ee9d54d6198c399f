"""Every command line of the README and docs/ for the scripts besides training composes as written.

``surrogates-train`` lines are checked in ``test_experiments.py`` (and each experiment runs there);
this covers ``surrogates-generate``, ``-evaluate``, ``-reduce``, ``-serve`` and ``-import``: a renamed
option or config group in ``conf/`` fails here instead of in a user's shell. What the commands then do
is tested by each script's own tests at tiny sizes.
"""

from __future__ import annotations

import re

import pytest


from tests.cli.conftest import documented_commands

# script -> its primary config in conf/
CONFIG_OF = {"generate": "generate", "evaluate": "evaluate", "reduce": "reduce", "serve": "serve", "import": "import"}


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


COMMANDS = documented_commands(CONFIG_OF)


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

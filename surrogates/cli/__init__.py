"""Command-line entry points (`@hydra.main`): they compose configs and instantiate, nothing more."""

import warnings
from pathlib import Path

from surrogates.cli import resolvers  # noqa: F401  (registers ${len:...})

CONFIG_PATH = str(Path(__file__).resolve().parents[2] / "conf")
"""The repository's Hydra config folder, as an absolute path (a relative one would be read as a
package path when the entry points run as console scripts)."""

# Lightning's batch flattening builds torch's LeafSpec, which torch deprecates with a FutureWarning at every
# training run's start: nothing a user of the commands can act on. Only this message is silenced, and only
# in processes that import the commands (not in scripts that import the library alone).
warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated", category=FutureWarning)

"""Command-line entry points (`@hydra.main`): they compose configs and instantiate, nothing more."""

from pathlib import Path

from surrogates.cli import resolvers  # noqa: F401  (registers ${len:...})

CONFIG_PATH = str(Path(__file__).resolve().parents[2] / "conf")
"""The repository's Hydra config folder, as an absolute path (a relative one would be read as a
package path when the entry points run as console scripts)."""

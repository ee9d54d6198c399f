"""Command-line entry points (`@hydra.main`): they compose configs and instantiate, nothing more."""

from surrogates.cli import resolvers  # noqa: F401  (registers ${len:...})

CONFIG_PATH = "../../conf"
"""The Hydra config folder, relative to this package (the repository's `conf/`)."""

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

# A command line that Hydra cannot compose (an option name with a typo, `pde=darcyy`) ends with one line and exit
# status 2, as the commands' own user errors do, instead of Hydra's multi-line report with status 1.
# It wraps a private Hydra function (hydra-core 1.3); a Hydra without it keeps its own report.
from surrogates.cli.errors import report_config_errors  # noqa: E402

try:
    from hydra._internal import utils as _hydra_utils
except ImportError:  # pragma: no cover - another Hydra layout
    _hydra_utils = None
_run_and_report = getattr(_hydra_utils, "run_and_report", None)
if callable(_run_and_report) and not hasattr(_run_and_report, "__wrapped__"):
    _hydra_utils.run_and_report = report_config_errors(_run_and_report)

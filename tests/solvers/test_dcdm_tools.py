"""tools/train_dcdm.py and tools/bench_dcdm.py: a network trained by the one is read by the other only
when its training record matches the benchmark's options (``--dcdm-models``)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parents[2] / "tools"


@pytest.fixture(scope="module")
def tools():
    sys.path.insert(0, str(TOOLS))
    try:
        yield importlib.import_module("train_dcdm"), importlib.import_module("bench_dcdm")
    finally:
        sys.path.remove(str(TOOLS))


TINY = ["--resolution", "10", "--n-train", "1", "--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "2",
        "--ritz-steps", "10", "--width", "2", "--structure", "additive", "--init", "random", "--scaling", "diagonal",
        "--validation-resolutions", "--threads", "1"]  # not the defaults, so that each option below differs


def test_benchmark_reads_a_trained_network_only_with_matching_options(tools, tmp_path):
    train_dcdm, bench_dcdm = tools
    path = tmp_path / "net.pt"
    train_dcdm.main(TINY + ["--seed", "3", "--model", str(path)])
    net, meta = bench_dcdm.trained(bench_dcdm.parse_args(TINY), 3, path)
    assert net.init_kwargs["structure"] == "additive" and meta["seed"] == 3 and meta["weighting"] == "paper"
    with pytest.raises(SystemExit, match="trained with"):
        bench_dcdm.trained(bench_dcdm.parse_args(TINY), 4, path)  # another seed
    with pytest.raises(SystemExit, match="trained with"):
        bench_dcdm.trained(bench_dcdm.parse_args(TINY + ["--structure", "v_cycle"]), 3, path)
    with pytest.raises(SystemExit, match="trained with"):
        bench_dcdm.trained(bench_dcdm.parse_args(TINY + ["--weighting", "inverse_sqrt"]), 3, path)
    with pytest.raises(SystemExit, match="trained with"):
        bench_dcdm.trained(bench_dcdm.parse_args(TINY + ["--init", "identity"]), 3, path)
    with pytest.raises(SystemExit, match="trained with"):
        bench_dcdm.trained(bench_dcdm.parse_args(TINY + ["--scaling", "mean"]), 3, path)
    with pytest.raises(SystemExit, match="trained with"):
        bench_dcdm.trained(bench_dcdm.parse_args(TINY + ["--validation-resolutions", "10"]), 3, path)


def test_validation_selected_network_records_its_curve_and_kept_epoch(tools, tmp_path):
    """The record holds one validation count per epoch after the start's, and the kept epoch is the first minimum."""
    train_dcdm, bench_dcdm = tools
    options = TINY + ["--init", "identity", "--scaling", "mean", "--validation-resolutions", "10", "--n-val", "1",
                      "--epochs", "2"]
    path = tmp_path / "net.pt"
    train_dcdm.main(options + ["--seed", "0", "--model", str(path)])
    net, meta = bench_dcdm.trained(bench_dcdm.parse_args(options), 0, path)
    counts = meta["validation_history"]
    assert len(counts) == 3 and meta["selected_epoch"] == counts.index(min(counts))
    assert net.init_kwargs["init"] == "identity" and net.init_kwargs["scaling"] == "mean"

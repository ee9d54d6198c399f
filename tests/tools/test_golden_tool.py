"""``tools/make_golden_checkpoints.py --add``: new entries join the current folder, nothing else is touched."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from tools.make_golden_checkpoints import MANIFEST, current_folder, main  # noqa: E402

GOLDEN = ROOT / "tests" / "golden"


def _digests(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture()
def golden_copy(tmp_path, monkeypatch):
    """The committed golden folder with its TFNO entry removed, as it was before the entry existed."""
    out = tmp_path / "golden"
    shutil.copytree(GOLDEN, out)
    folder = out / current_folder()
    for suffix in (".ckpt", ".npz"):
        (folder / f"tfno{suffix}").unlink()
    manifest = json.loads((out / MANIFEST).read_text())
    manifest["files"] = [e for e in manifest["files"] if not (e["version"] == current_folder() and e["name"] == "tfno")]
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    yield out
    torch.set_num_threads(threads)  # the tool runs on one thread


def test_add_writes_only_the_named_entry_and_keeps_every_other_file_and_entry(golden_copy):
    before_files = _digests(golden_copy)
    before = json.loads((golden_copy / MANIFEST).read_text())["files"]
    assert main(["--out", str(golden_copy), "--add", "tfno"]) == 0
    after_files = _digests(golden_copy)
    added = sorted(set(after_files) - set(before_files))
    assert added == [f"{current_folder()}/tfno.ckpt", f"{current_folder()}/tfno.npz"]
    assert all(after_files[name] == digest for name, digest in before_files.items() if name != MANIFEST)
    after = json.loads((golden_copy / MANIFEST).read_text())["files"]
    assert [e for e in after if e["name"] != "tfno" or e["version"] != current_folder()] == before
    (entry,) = [e for e in after if e["name"] == "tfno" and e["version"] == current_folder()]
    assert entry["model"] == "tfno" and entry["kind"] == "operator"
    assert entry["sha256"] == after_files[entry["file"]]


def test_add_refuses_existing_and_unknown_entries(golden_copy, capsys):
    before = _digests(golden_copy)
    assert main(["--out", str(golden_copy), "--add", "fno2d"]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err
    assert main(["--out", str(golden_copy), "--add", "no_such_model"]) == 2
    assert "unknown entries ['no_such_model']" in capsys.readouterr().err
    assert _digests(golden_copy) == before

"""Every Python example of the README and docs/ runs, at tiny sizes.

``tests/cli/test_documented_commands.py`` and ``test_experiments.py`` check the command lines; this runs the
```python blocks. Each block is found by its file and first line in ``SNIPPETS``: a recipe (code run first in
the block's namespace to make what the text assumes, e.g. an array ``a`` or a file the block opens, and
``(old, new)`` replacements that shrink the sizes: each ``old`` must occur in the block, so an edited example
fails here until its recipe follows), or the test that runs the same calls (examples that need a live server
or a trained model of their own). A new block without an entry fails ``test_every_snippet_has_a_recipe``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pytest

from tests.cli.conftest import DOCS


@dataclass(frozen=True)
class Recipe:
    setup: str = ""
    replace: list[tuple[str, str]] = field(default_factory=list)


def documented_snippets() -> dict[str, str]:
    """``"<file>: <first line>" -> code`` of every ```python block of the README and docs/."""
    found = {}
    for path in DOCS:
        for match in re.finditer(r"^```python\n(.*?)^```", path.read_text(), flags=re.M | re.S):
            code = match.group(1)
            found[f"{path.name}: {code.splitlines()[0].strip()}"] = code
    return found


DARCY_FILES = """
from pathlib import Path
from surrogates.data.generation import generate_dataset
from surrogates.pdes.darcy import Darcy
generate_dataset(Darcy(resolution=9), Path("datasets/darcy_64"), {"train": 3, "val": 1, "test": 1},
                 seed=0, chunk_size=4, progress=False)
"""

SNIPPETS: dict[str, Recipe | str] = {
    "README.md: import xarray as xr": Recipe(setup=DARCY_FILES),
    "README.md: from surrogates import Surrogate": Recipe(setup="""
import shutil, numpy as np, xarray as xr
from pathlib import Path
Path("outputs/demo/train/checkpoints").mkdir(parents=True)
shutil.copy(DARCY_CHECKPOINT, "outputs/demo/train/checkpoints/best.ckpt")
a = np.full((2, 16, 16), 3.0, dtype=np.float32)
ds = xr.Dataset({"a": (("sample", "x", "y"), a)})
"""),
    "README.md: import numpy as np": Recipe(replace=[
        ("Darcy(resolution=128)", "Darcy(resolution=16)"), ("torch.ones(32,", "torch.ones(3,")]),
    "models.md: from surrogates.serve.rollout import RolloutSurrogate": Recipe(
        setup="""
import numpy as np
from pathlib import Path
from tests.serve.conftest import save_rollout_checkpoint
Path("outputs/train/runs/run/checkpoints").mkdir(parents=True)
save_rollout_checkpoint(Path("outputs/train/runs/run/checkpoints/best.ckpt"), refinement_steps=1)
u0, dt, dx = np.random.default_rng(0).standard_normal((2, 32)), 0.8, 0.25
""",
        replace=[("<run>", "run"), ("steps=500", "steps=3"), ("rollout_ensemble(u0, 100,", "rollout_ensemble(u0, 2,")]),
    "reduced_basis.md: from surrogates.pdes.gaussian_bump import GaussianBump": Recipe(replace=[
        ("GaussianBump(resolution=65)", "GaussianBump(resolution=9)"), ("max_basis_size=25", "max_basis_size=4")]),
    "reduced_basis.md: from surrogates.pdes.thermal_block import ThermalBlock": Recipe(replace=[
        ("ThermalBlock(resolution=65)", "ThermalBlock(resolution=9)"), ("PowerLimitsEIM(degree=6)", "PowerLimitsEIM(degree=2)"),
        ("PowerLimitsEIM(degree=5, splits=2)", "PowerLimitsEIM(degree=2, splits=2)")]),
    "serving.md: import io, httpx, xarray as xr":
        "tests/serve/test_app.py::test_netcdf_in_netcdf_out (a split of a generated dataset posted to a live server)",
    "serving.md: from surrogates.serve.pointwise import PointwiseSurrogate":
        "tests/serve/test_pointwise.py (coordinates, domain, predict, predict_grid, points outside the box)",
    "solvers.md: import numpy as np": Recipe(replace=[
        ("poisson_operator(256)", "poisson_operator(16)"), ("torch.randn(32,", "torch.randn(3,")]),
    "solvers.md: from surrogates.solvers.dcdm import dcdm, load": Recipe(setup="""
import torch
from surrogates.solvers.dcdm import DCDMNet
from surrogates.solvers.finite_differences import poisson_operator
DCDMNet(width=2, blocks=1, structure="additive", init="identity", scaling="mean").save(
    "datasets/preconditioners/dcdm_darcy_64.pt")
A = poisson_operator(16)
b = torch.ones(A.shape[0], dtype=torch.float64)
"""),
    "solvers.md: from surrogates.solvers import fem": Recipe(setup="""
import meshio, numpy as np
n = 5
x, y = np.meshgrid(np.linspace(0, 1, n), np.linspace(0, 1, n), indexing="ij")
cells = [[p, p + n, p + n + 1] for p in range(n * (n - 1)) if p % n < n - 1]
cells += [[p, p + n + 1, p + 1] for p in range(n * (n - 1)) if p % n < n - 1]
meshio.write("domain.msh", meshio.Mesh(np.c_[x.ravel(), y.ravel()], [("triangle", np.array(cells))]),
             file_format="gmsh22")
"""),
    "your_data.md: import numpy as np, xarray as xr": Recipe(setup="""
import numpy as np
rng = np.random.default_rng(0)
x = y = np.linspace(0.0, 1.0, 8)
a, u, v = rng.random((4, 8, 8)), rng.random((4, 8, 8)), rng.random((4, 8, 8, 2))
nu = rng.random(4)
"""),
}

FOUND = documented_snippets()


def test_every_snippet_has_a_recipe():
    assert sorted(set(FOUND) - set(SNIPPETS)) == [], "a new example: give it a recipe in SNIPPETS"
    assert sorted(set(SNIPPETS) - set(FOUND)) == [], "an example is gone or its first line changed"


@pytest.mark.parametrize("where", [w for w in FOUND if isinstance(SNIPPETS.get(w), Recipe)])
def test_documented_snippet_runs(where, tmp_path, monkeypatch, darcy_checkpoint):
    recipe, code = SNIPPETS[where], FOUND[where]
    for old, new in recipe.replace:
        assert old in code, f"{where}: {old!r} is no longer in the example"
        code = code.replace(old, new)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "datasets" / "preconditioners").mkdir(parents=True)
    namespace = {"DARCY_CHECKPOINT": str(darcy_checkpoint)}
    exec(compile(recipe.setup, f"<setup of {where}>", "exec"), namespace)
    exec(compile(code, where, "exec"), namespace)

"""Small files in each foreign layout, written here the way their own tools write them (h5py / xarray)."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import xarray as xr

from tests.cli.conftest import compose_cfg  # noqa: F401  (fixture)


def write_xarray(path: Path, n: int = 20, s: int = 8, seed: int = 0) -> xr.Dataset:
    """A plain xarray NetCDF-4 file: ``a (sample, x, y)``, ``u (sample, x, y)``, nothing else."""
    rng = np.random.default_rng(seed)
    a = rng.random((n, s, s))
    ds = xr.Dataset(
        {"a": (("sample", "x", "y"), a), "u": (("sample", "x", "y"), np.sin(a) + 0.1)},
        coords={"x": np.linspace(0, 1, s), "y": np.linspace(0, 1, s)},
    )
    ds.to_netcdf(path, engine="h5netcdf")
    return ds


def write_darcy(path: Path, n: int = 20, s: int = 8, beta: float = 1.0, seed: int = 0) -> dict:
    """PDEBench 2D Darcy: ``nu (N, s, s)``, ``tensor (N, 1, s, s)``, ``x-coordinate``, ``y-coordinate``, attr ``beta``."""
    rng = np.random.default_rng(seed)
    nu = np.where(rng.random((n, s, s)) > 0.5, 1.0, 0.1).astype(np.float32)
    tensor = (rng.random((n, 1, s, s)) * nu[:, None]).astype(np.float32)
    x = ((np.arange(s) + 0.5) / s).astype(np.float32)
    with h5py.File(path, "w") as f:
        f.create_dataset("nu", data=nu)
        f.create_dataset("tensor", data=tensor)
        f.create_dataset("x-coordinate", data=x)
        f.create_dataset("y-coordinate", data=x)
        f.attrs["beta"] = beta
    return {"nu": nu, "tensor": tensor, "x": x}


def write_tensor_1d(path: Path, n: int = 16, steps: int = 6, nx: int = 16, seed: int = 0) -> dict:
    """PDEBench 1D (Burgers, advection, reaction-diffusion): ``tensor (N, T, X)``, ``t-coordinate (T + 1)``, ``x-coordinate``."""
    rng = np.random.default_rng(seed)
    x = ((np.arange(nx) + 0.5) / nx).astype(np.float32)
    t = np.linspace(0, 2, steps + 1).astype(np.float32)
    u0 = rng.standard_normal((n, 1, nx))
    tensor = (u0 * np.exp(-t[None, :steps, None])).astype(np.float32)
    with h5py.File(path, "w") as f:
        f.create_dataset("tensor", data=tensor)
        f.create_dataset("x-coordinate", data=x)
        f.create_dataset("t-coordinate", data=t)
        f.attrs["Nu"] = 0.001
    return {"tensor": tensor, "x": x, "t": t}


def write_groups(path: Path, n: int = 10, steps: int = 5, space: tuple[int, ...] = (8, 8), channels: int = 2,
                 seed: int = 0) -> list[np.ndarray]:
    """PDEBench one group per sample (diffusion-reaction 2D, diffusion-sorption 1D, shallow water):
    ``0000/data (T, *space, C)``, ``0000/grid/x`` [``y``], ``0000/grid/t``, lzf-compressed like PDEBench's generator."""
    rng = np.random.default_rng(seed)
    out = []
    with h5py.File(path, "w") as f:
        for i in range(n):
            data = rng.random((steps, *space, channels)).astype(np.float32)
            key = str(i).zfill(4)
            f.create_dataset(f"{key}/data", data=data, dtype="float32", compression="lzf")
            for axis, size in zip("xyz", space):
                f.create_dataset(f"{key}/grid/{axis}", data=np.linspace(-1, 1, size), dtype="float32", compression="lzf")
            f.create_dataset(f"{key}/grid/t", data=np.linspace(0, 5, steps + 1), dtype="float32", compression="lzf")
            f[key].attrs["config"] = "sim: {}"
            out.append(data)
    return out


def write_cfd(path: Path, n: int = 6, steps: int = 4, space: tuple[int, ...] = (8, 8), seed: int = 0) -> dict:
    """PDEBench compressible NS: ``density``, ``pressure``, ``Vx`` [``Vy``, ``Vz``] ``(N, T, *space)``,
    ``x-/y-/z-coordinate``, ``t-coordinate (T + 1)``, attrs ``eta``, ``zeta``, ``M``."""
    rng = np.random.default_rng(seed)
    names = ["density", "pressure", "Vx", "Vy", "Vz"][: 2 + len(space)]
    data = {name: (rng.random((n, steps, *space)) + 0.5).astype(np.float32) for name in names}
    with h5py.File(path, "w") as f:
        for name, values in data.items():
            f.create_dataset(name, data=values)
        for axis, size in zip("xyz", space):
            f.create_dataset(f"{axis}-coordinate", data=((np.arange(size) + 0.5) / size).astype(np.float32))
        f.create_dataset("t-coordinate", data=np.linspace(0, 1, steps + 1).astype(np.float32))
        f.attrs["eta"], f.attrs["zeta"] = 0.01, 0.01
        if len(space) > 1:
            f.attrs["M"] = 0.1
    return data


def write_the_well(path: Path, n: int = 4, steps: int = 5, s: int = 8, seed: int = 0, rayleigh: float = 1e6,
                   dataset_name: str = "toy_flow") -> dict:
    """A file of The Well (its docs/data_format.md and the_well/utils/dummy_data.py): a scalar field ``buoyancy``,
    a vector field ``velocity``, a constant tensor field ``D``, scalars, periodic x and wall y boundaries."""
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 1, s, endpoint=False, dtype=np.float32)
    y = np.linspace(0, 1, s, dtype=np.float32)
    t = np.linspace(0, 1, steps, dtype=np.float32)
    buoyancy = rng.random((n, steps, s, s)).astype(np.float32)
    velocity = rng.standard_normal((n, steps, s, s, 2)).astype(np.float32)
    tensor = rng.random((n, s, s, 2, 2)).astype(np.float32)
    mask_x = np.zeros(s, bool)
    mask_y = np.zeros(s, bool)
    mask_y[[0, -1]] = True
    with h5py.File(path, "w") as f:
        f.attrs["Rayleigh"] = rayleigh
        f.attrs["Prandtl"] = 1.0
        f.attrs["dataset_name"] = dataset_name
        f.attrs["grid_type"] = "cartesian"
        f.attrs["n_spatial_dims"] = 2
        f.attrs["n_trajectories"] = n
        f.attrs["simulation_parameters"] = ["Rayleigh", "Prandtl"]
        group = f.create_group("boundary_conditions")
        for key, dim, kind, mask in (("x_periodic", "x", "PERIODIC", mask_x), ("y_wall", "y", "WALL", mask_y)):
            sub = group.create_group(key)
            sub.attrs["associated_dims"] = [dim]
            sub.attrs["associated_fields"] = []
            sub.attrs["bc_type"] = kind
            sub.attrs["sample_varying"] = False
            sub.attrs["time_varying"] = False
            sub.create_dataset("mask", data=mask)
            sub.create_dataset("values", data=np.zeros(int(mask.sum()), np.float32))
        group = f.create_group("dimensions")
        group.attrs["spatial_dims"] = ["x", "y"]
        for key, val in (("time", t), ("x", x), ("y", y)):
            group.create_dataset(key, data=val)
            group[key].attrs["sample_varying"] = False
            group[key].attrs["time_varying"] = key == "time"
        group = f.create_group("scalars")
        group.attrs["field_names"] = ["Rayleigh", "Prandtl"]
        for key in ("Rayleigh", "Prandtl"):
            group.create_dataset(key, data=np.array(f.attrs[key]))
            group[key].attrs["sample_varying"] = False
            group[key].attrs["time_varying"] = False
        for name, values, time_varying, order in (("buoyancy", buoyancy, True, 0), ("velocity", velocity, True, 1),
                                                  ("D", tensor, False, 2)):
            group = f.require_group(f"t{order}_fields")
            group.attrs["field_names"] = [name]
            dset = group.create_dataset(name, data=values)
            dset.attrs["dim_varying"] = [True, True]
            dset.attrs["sample_varying"] = True
            dset.attrs["time_varying"] = time_varying
            if order == 2:
                dset.attrs["symmetric"] = False
                dset.attrs["antisymmetric"] = False
    return {"buoyancy": buoyancy, "velocity": velocity, "D": tensor, "x": x, "y": y, "t": t}


def write_the_well_folder(root: Path, splits: dict[str, int], **kwargs) -> dict[str, list[dict]]:
    """``<root>/data/{train,valid,test}/<name>_<k>.hdf5`` as The Well's download lays them out."""
    out: dict[str, list[dict]] = {}
    for k, (split, files) in enumerate(splits.items()):
        folder = root / "data" / split
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(files):
            out.setdefault(split, []).append(
                write_the_well(folder / f"toy_flow_Rayleigh_{i}.hdf5", seed=10 * k + i, rayleigh=10.0 ** (6 + i), **kwargs)
            )
    return out


@pytest.fixture
def run_import(compose_cfg, tmp_path):  # noqa: F811
    """``surrogates-import`` through its entry-point function, with a config composed like a real run."""
    from surrogates.cli.import_data import import_data

    def _run(*overrides: str):
        cfg = compose_cfg("import", [f"paths.data_dir={tmp_path / 'datasets'}", "progress=false", *overrides])
        return import_data(cfg)

    return _run

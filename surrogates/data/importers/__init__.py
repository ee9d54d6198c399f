"""Import foreign data into the package's dataset format (``surrogates-import``).

- :mod:`~surrogates.data.importers.xarray_layout`: anything xarray opens (NetCDF, HDF5/NetCDF-4, zarr);
- :mod:`~surrogates.data.importers.pdebench`: PDEBench files, recognised by their layout;
- :mod:`~surrogates.data.importers.the_well`: The Well's files and folders;
- :mod:`~surrogates.data.importers.planning`: recognising each file's layout, one plan over all files;
- :mod:`~surrogates.data.importers.settings`: what an import is asked to do (:class:`ImportSettings`);
- :mod:`~surrogates.data.importers.splits`: which split each sample goes to;
- :mod:`~surrogates.data.importers.run`: streaming, atomic and resumable writing (:func:`import_dataset`).
"""

from surrogates.data.importers.plan import ImportDataError
from surrogates.data.importers.run import import_dataset
from surrogates.data.importers.settings import ImportSettings

__all__ = ["ImportDataError", "ImportSettings", "import_dataset"]

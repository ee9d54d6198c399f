"""Inference: :class:`~surrogates.serve.surrogate.Surrogate` (Python) and the HTTP service.

- :mod:`~surrogates.serve.surrogate`: load a checkpoint, predict on numpy or xarray data;
- :mod:`~surrogates.serve.registry`: the models of a folder and the reference solvers;
- :mod:`~surrogates.serve.entries`: what one served model is (variables, grid rule, request checks);
- :mod:`~surrogates.serve.loaders`: one loader per kind of model file, and the reference solvers;
- :mod:`~surrogates.serve.batching`: per-model micro-batching in a worker thread;
- :mod:`~surrogates.serve.codecs`: JSON and NetCDF bodies, one module per concept (media types, JSON bodies,
  NetCDF headers, reading NetCDF requests, writing NetCDF answers);
- :mod:`~surrogates.serve.openapi`: the service's OpenAPI document (error answers, per-model request forms);
- :mod:`~surrogates.serve.app`: the FastAPI app (``create_app``), started by ``surrogates-serve``.

Nothing is imported here, so that ``from surrogates import Surrogate`` needs no web framework.
"""

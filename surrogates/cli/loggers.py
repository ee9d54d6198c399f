"""Logger factories the logger configs name where Lightning's class alone does not do (conf/logger/)."""

from __future__ import annotations

import os
from typing import Any

__all__ = ["mlflow_logger"]


def mlflow_logger(tracking_uri: str | None = None, **kwargs: Any):
    """Lightning's ``MLFLowLogger``; a ``file:`` tracking URI (a local file store) is allowed explicitly.

    MLflow 3.x refuses its file store unless ``MLFLOW_ALLOW_FILE_STORE=true`` (it recommends a database,
    which needs SQLAlchemy; the ``loggers`` extra installs ``mlflow-skinny`` without it). The variable is
    set here for ``file:`` URIs unless the environment already sets it; a server URI
    (``http://...``) or a database URI is used as given.
    """
    from lightning.pytorch.loggers import MLFlowLogger

    if tracking_uri and str(tracking_uri).startswith("file:"):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return MLFlowLogger(tracking_uri=tracking_uri, **kwargs)

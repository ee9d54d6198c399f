"""Vector and tensor fields stored as components: a field's name stands for all its components.

Importers (``surrogates-import``) and the reader of foreign files (``data=xarray``) store a field with a
component dim, e.g. ``velocity (sample, x, y, component)``, as one variable per component,
``velocity_x``, ``velocity_y``, each with the attributes ``field`` (``"velocity"``) and ``component``
(``"x"``). So that users may name the field as they know it, ``inputs=[velocity]`` is read as
``[velocity_x, velocity_y]`` (:func:`expand_field_names`), in the order the file stores them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["expand_field_names", "field_components"]


def field_components(variables: Mapping[str, Any]) -> dict[str, list[str]]:
    """Field name -> the names of its component variables, in stored order.

    Parameters
    ----------
    variables
        Name -> anything with ``attrs`` (a mapping), e.g. :class:`~surrogates.data.schema.VariableInfo`;
        a component carries ``attrs["field"]``.
    """
    fields: dict[str, list[str]] = {}
    for name, var in variables.items():
        field = (getattr(var, "attrs", None) or {}).get("field")
        if field is not None:
            fields.setdefault(str(field), []).append(name)
    return fields


def expand_field_names(names: Sequence[str], variables: Mapping[str, Any]) -> list[str]:
    """``names`` with every field name that is not itself a variable replaced by its components.

    Names that are neither a variable nor a field are kept, for the caller to report.

    Examples
    --------
    >>> from types import SimpleNamespace as V
    >>> stored = {"p": V(attrs={}), "v_x": V(attrs={"field": "v", "component": "x"}), "v_y": V(attrs={"field": "v", "component": "y"})}
    >>> expand_field_names(["v", "p"], stored)
    ['v_x', 'v_y', 'p']
    """
    fields = field_components(variables)
    out: list[str] = []
    for name in (str(n) for n in names):
        out.extend(fields[name] if name not in variables and name in fields else [name])
    return out

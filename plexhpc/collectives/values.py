"""Taking values apart for collectives and putting results back together.

A value is one of:

- an **array**: a numpy array of a numeric or bool dtype, any shape (0-d and empty too),
  contiguous or not (a non-contiguous one is copied once);
- a **scalar**: Python ``bool``/``int``/``float``/``complex`` or a numpy scalar; the result
  comes back as the same Python type;
- a **tree**: nested dicts, lists and tuples whose leaves are arrays or scalars (a
  model's gradients, a dict of metrics). Structure and key order must match across ranks;
- an **object**: anything else picklable (the slow path: pickled, documented as such).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Flat", "flatten", "unflatten", "describe", "signature_of", "ARRAY", "SCALAR",
           "TREE", "OBJECT"]

ARRAY, SCALAR, TREE, OBJECT = "array", "scalar", "tree", "object"

_PY_SCALARS = (bool, int, float, complex)
_INT64_MIN, _INT64_MAX = -(2 ** 63), 2 ** 63 - 1


@dataclass
class Flat:
    """A value taken apart: its kind, its structure and its leaves (contiguous arrays)."""

    kind: str
    treedef: object = None
    leaves: list = field(default_factory=list)
    obj: object = None
    #: True when some leaf is a copy (a non-contiguous array, a scalar), so writing into
    #: the leaves would not reach the caller's objects
    copied: bool = False

    def leaf_meta(self) -> list:
        return [(a.dtype.str, a.shape) for a in self.leaves]


class _Unsupported(Exception):
    pass


def _leaf(x):
    """(leaf array, how to give it back) or raise _Unsupported."""
    if isinstance(x, np.ndarray):
        if x.dtype.kind not in "biufc":
            raise _Unsupported
        return (x if x.flags.c_contiguous else np.ascontiguousarray(x)), ("a",)
    if isinstance(x, np.generic):
        if x.dtype.kind not in "biufc":
            raise _Unsupported
        return np.asarray(x), ("g",)
    if isinstance(x, bool):
        return np.asarray(x, np.bool_), ("s", "bool")
    if isinstance(x, int):
        if not _INT64_MIN <= x <= _INT64_MAX:
            raise _Unsupported
        return np.asarray(x, np.int64), ("s", "int")
    if isinstance(x, float):
        return np.asarray(x, np.float64), ("s", "float")
    if isinstance(x, complex):
        return np.asarray(x, np.complex128), ("s", "complex")
    raise _Unsupported


def _walk(x, leaves, copied):
    if isinstance(x, dict):
        keys = tuple(x)
        return ("d", keys, tuple(_walk(x[k], leaves, copied) for k in keys))
    if isinstance(x, (list, tuple)) and type(x) in (list, tuple):
        return ("l" if type(x) is list else "t", tuple(_walk(v, leaves, copied) for v in x))
    arr, how = _leaf(x)
    if arr is not x:
        copied.append(True)
    leaves.append(arr)
    return how


def flatten(value) -> Flat:
    """Take ``value`` apart (see the module docstring for what each kind means)."""
    if isinstance(value, np.ndarray) and value.dtype.kind in "biufc":
        arr = value if value.flags.c_contiguous else np.ascontiguousarray(value)
        return Flat(ARRAY, ("a",), [arr], copied=arr is not value)
    if isinstance(value, (np.generic,) + _PY_SCALARS):
        try:
            arr, how = _leaf(value)
            return Flat(SCALAR, how, [arr], copied=True)
        except _Unsupported:
            return Flat(OBJECT, obj=value)
    if isinstance(value, (dict, list, tuple)):
        leaves: list = []
        copied: list = []
        try:
            treedef = _walk(value, leaves, copied)
        except _Unsupported:
            return Flat(OBJECT, obj=value)
        return Flat(TREE, treedef, leaves, copied=bool(copied))
    return Flat(OBJECT, obj=value)


def _rebuild(treedef, it):
    tag = treedef[0]
    if tag == "d":
        return {k: _rebuild(t, it) for k, t in zip(treedef[1], treedef[2])}
    if tag == "l":
        return [_rebuild(t, it) for t in treedef[1]]
    if tag == "t":
        return tuple(_rebuild(t, it) for t in treedef[1])
    arr = next(it)
    if tag == "a":
        return arr
    if tag == "g":
        return arr[()]
    return arr.item()  # a Python scalar: the result keeps the Python type it came as


def unflatten(flat: Flat, leaves: list):
    """Put result ``leaves`` back into the shape of ``flat``."""
    if flat.kind == OBJECT:
        return leaves
    return _rebuild(flat.treedef, iter(leaves))


def describe(flat: Flat) -> str:
    """A short human description for error messages: ``float64[3, 4]``, ``tree{...}``."""
    if flat.kind == OBJECT:
        return f"object {type(flat.obj).__name__}"
    parts = [f"{np.dtype(a.dtype).name}{list(a.shape)}" for a in flat.leaves]
    if flat.kind == TREE:
        shown = ", ".join(parts[:6]) + (", ..." if len(parts) > 6 else "")
        return f"tree {_structure(flat.treedef)} of {len(parts)} leaves ({shown})"
    return parts[0]


def _structure(treedef) -> str:
    tag = treedef[0]
    if tag == "d":
        return "{" + ", ".join(f"{k!r}: {_structure(t)}" for k, t in
                               zip(treedef[1], treedef[2])) + "}"
    if tag in ("l", "t"):
        inner = ", ".join(_structure(t) for t in treedef[1])
        return f"[{inner}]" if tag == "l" else f"({inner})"
    return "*"


def signature_of(*parts) -> int:
    """A deterministic non-negative 62-bit hash (Python's ``hash`` differs per process)."""
    text = repr(parts).encode()
    return (zlib.crc32(text) << 30) ^ zlib.adler32(text) & ((1 << 62) - 1)

"""The head's dtype codec: a JSON form that round-trips every numpy dtype without Python objects.

:func:`encode_dtype` (writers) refuses with InvalidArgumentError what it cannot
store exactly; :func:`decode_dtype` (readers) refuses with FormatError anything
it did not produce. Both bound nesting (``DTYPE_DEPTH_MAX``) and field counts
(``DTYPE_FIELDS_MAX``) as docs/format.md §4.1 says.
"""

from __future__ import annotations

import re
from typing import Any, Final

import numpy as np

from ..errors import FormatError, InvalidArgumentError
from .spec import DTYPE_DEPTH_MAX, DTYPE_FIELDS_MAX, NDIM_MAX

__all__ = ["decode_dtype", "encode_dtype"]


def encode_dtype(dt: np.dtype[Any], *, what: str = "array", _depth: int = 0) -> Any:
    """JSON form of a dtype: ``dt.str`` for plain dtypes, objects for structured and subarray ones.

    Raises InvalidArgumentError (naming ``what``) for dtypes holding Python objects
    and for dtypes beyond the limits readers enforce (DTYPE_DEPTH_MAX, DTYPE_FIELDS_MAX).
    """
    if dt.names is None and dt.subdtype is None and not dt.hasobject and dt.itemsize:
        return dt.str
    if _depth >= DTYPE_DEPTH_MAX:
        raise InvalidArgumentError(f"{what}: dtype nested deeper than the limit of {DTYPE_DEPTH_MAX}")
    if dt.names is not None and len(dt.names) > DTYPE_FIELDS_MAX:
        raise InvalidArgumentError(f"{what}: dtype of {len(dt.names)} fields, more than {DTYPE_FIELDS_MAX}")
    if dt.hasobject:
        raise InvalidArgumentError(f"{what}: dtype {dt} holds Python objects, which ndckpt does not store")
    if dt.subdtype is not None:
        base, shape = dt.subdtype
        return {"base": encode_dtype(base, what=what, _depth=_depth + 1), "shape": list(shape)}
    if dt.names is not None:
        fields = dt.fields
        assert fields is not None
        out: dict[str, Any] = {
            "names": list(dt.names),
            "formats": [encode_dtype(fields[n][0], what=what, _depth=_depth + 1) for n in dt.names],
            "offsets": [int(fields[n][1]) for n in dt.names],
            "itemsize": dt.itemsize,
        }
        titles = [fields[n][2] if len(fields[n]) > 2 else None for n in dt.names]  # type: ignore[misc]
        if any(t is not None for t in titles):
            if not all(t is None or isinstance(t, str) for t in titles):
                raise InvalidArgumentError(f"{what}: dtype {dt} has non-string field titles")
            out["titles"] = titles
        if dt.isalignedstruct:
            out["aligned"] = True
        return out
    if dt.kind == "V" and dt.itemsize == 0:
        raise InvalidArgumentError(f"{what}: zero-size void dtype {dt} is not supported")
    return dt.str


#: The form of ``dtype.str`` for plain dtypes: byte order, kind (no "O"), size, datetime unit.
_DTYPE_STR: Final = re.compile(r"[<>|][biufcmMSUV][0-9]+(\[[0-9]*[a-zA-Z]+\])?")


def decode_dtype(obj: Any, *, what: str = "array", _depth: int = 0) -> np.dtype[Any]:
    """Inverse of :func:`encode_dtype`; raises FormatError for anything it did not produce.

    Nesting deeper than DTYPE_DEPTH_MAX, more than DTYPE_FIELDS_MAX fields, titles
    that are not strings and an "aligned" that is not a boolean are refused too.
    """
    if _depth >= DTYPE_DEPTH_MAX and not isinstance(obj, str):  # (as encode_dtype counts)
        raise FormatError(f"{what}: bad dtype: nested deeper than the limit of {DTYPE_DEPTH_MAX}")
    try:
        if isinstance(obj, str):
            if not _DTYPE_STR.fullmatch(obj):  # numpy's own parser raises SyntaxError and warns
                raise ValueError(f"bad dtype string {obj!r}")
            dt = np.dtype(obj)
        elif isinstance(obj, dict) and set(obj) == {"base", "shape"}:
            shape = obj["shape"]
            if not isinstance(shape, list) or not all(type(s) is int and s >= 0 for s in shape):
                raise ValueError("bad subarray shape")
            if len(shape) > NDIM_MAX:
                raise ValueError(f"sub-array of {len(shape)} dimensions, more than the limit of {NDIM_MAX}")
            dt = np.dtype((decode_dtype(obj["base"], what=what, _depth=_depth + 1), tuple(shape)))
        elif isinstance(obj, dict) and {"names", "formats", "offsets", "itemsize"} <= set(obj) <= {
            "names",
            "formats",
            "offsets",
            "itemsize",
            "titles",
            "aligned",
        }:
            names, formats, offsets = obj["names"], obj["formats"], obj["offsets"]
            if type(names) is not list or type(formats) is not list or type(offsets) is not list:
                raise ValueError("names, formats and offsets must be lists")
            if not len(names) == len(formats) == len(offsets):
                raise ValueError("names, formats and offsets of different lengths")
            if len(names) > DTYPE_FIELDS_MAX:
                raise ValueError(f"{len(names)} fields, more than the limit of {DTYPE_FIELDS_MAX}")
            if not all(type(n) is str for n in names):
                raise ValueError("field names must be strings")
            if not all(type(o) is int and o >= 0 for o in offsets) or type(obj["itemsize"]) is not int:
                raise ValueError("bad field offsets or itemsize")
            spec: dict[str, Any] = {
                "names": names,
                "formats": [decode_dtype(f, what=what, _depth=_depth + 1) for f in formats],
                "offsets": offsets,
                "itemsize": obj["itemsize"],
            }
            if "titles" in obj:
                titles = obj["titles"]
                if type(titles) is not list or len(titles) != len(names):
                    raise ValueError("titles must be a list with one entry per field")
                if not all(t is None or type(t) is str for t in titles):
                    raise ValueError("field titles must be strings or null")
                spec["titles"] = titles
            aligned = obj.get("aligned", False)
            if type(aligned) is not bool:
                raise ValueError(f'"aligned" must be true or false, got {aligned!r}')
            dt = np.dtype(spec, align=aligned)  # type: ignore[call-overload]
        else:
            raise ValueError(f"unrecognised dtype description {obj!r}")
    except FormatError:
        raise
    except (TypeError, ValueError, KeyError, OverflowError, MemoryError, RecursionError) as e:
        # (numpy: itemsize >= 2**63 overflows; any failure to build the dtype is the file's)
        raise FormatError(f"{what}: bad dtype: {type(e).__name__}: {e}") from None
    if dt.hasobject:
        raise FormatError(f"{what}: dtype {dt} holds Python objects")
    return dt

"""Python-value leaves and metadata: an exact, tagged JSON encoding stored in the head.

A checkpoint's leaves are numpy arrays (stored in frames) or *values*: Python
scalars (``int`` of any size, ``float``, ``bool``, ``complex``, ``str``,
``bytes``, ``None``), numpy scalars, and lists, tuples and dicts of values.
Values live in the head's ``"values"`` key (format §2.2.1) as canonical JSON,
each encoded so that it decodes to an equal value of the same type, bit for
bit (``-0.0``, NaN payloads, 128-bit integers, tuple versus list, dict order).

:func:`encode` refuses what it cannot store exactly with an
InvalidArgumentError naming the leaf and the problem; :func:`decode` refuses
anything :func:`encode` would not have produced with a FormatError. Both
bound nesting by :data:`~ndckpt.container.VALUE_DEPTH_MAX` (a list that
contains itself is refused, not followed), so neither can exhaust the stack.
"""

from __future__ import annotations

import base64
import binascii
import re
import struct
from typing import Any, Final

import numpy as np

from ..errors import FormatError, InvalidArgumentError
from .dtype import decode_dtype, encode_dtype
from .spec import VALUE_DEPTH_MAX

__all__ = ["decode", "encode", "is_value", "json_metadata", "type_name"]

_INT_LO: Final = -(1 << 63)
_INT_HI: Final = 1 << 63
_HEX_INT: Final = re.compile(r"-?[1-9a-f][0-9a-f]*")
_HEX64: Final = re.compile(r"[0-9a-f]{16}")
_B64: Final = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_DOUBLE: Final = struct.Struct(">d")
_TAGS: Final = frozenset({"int", "float", "complex", "bytes", "tuple", "dict", "numpy"})
_SCALARS: Final = (bool, int, float, complex, str, bytes, type(None))
#: What a leaf may be, for messages.
KINDS: Final = (
    "a numpy array, a numpy scalar, or a Python value (int, float, bool, complex, str, bytes, None, "
    "or a list, tuple or dict of these)"
)


def is_value(v: Any) -> bool:
    """Whether a leaf is stored as a value in the head (anything but an ndarray, which goes to frames)."""
    return not isinstance(v, np.ndarray)


def type_name(v: Any) -> str:
    """``np.float32``, ``int``, ``list``...: how ``ndckpt info`` names a value's type."""
    t = type(v)
    return f"np.{t.__name__}" if isinstance(v, np.generic) else t.__name__


def _hex64(x: float) -> str:
    return _DOUBLE.pack(x).hex()


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode("ascii")


#: Bytes of an x87 extended-precision number that hold its value; numpy pads it to 12 or 16 bytes
#: and leaves the padding of a scalar as whatever memory held (None where long double has no padding).
_LONGDOUBLE_VALUE_BYTES = 10 if np.finfo(np.longdouble).nmant == 63 and np.dtype(np.longdouble).itemsize > 10 else None


def _scalar_bytes(v: np.generic) -> bytes:
    """A numpy scalar's bytes, with the padding of long doubles zeroed: the same value always
    gives the same bytes, and no stray memory reaches the file."""
    raw = np.asarray(v).tobytes()
    if _LONGDOUBLE_VALUE_BYTES is None or v.dtype.type not in (np.longdouble, np.clongdouble):
        return raw
    part = np.dtype(np.longdouble).itemsize
    out = bytearray(raw)
    for start in range(0, len(out), part):  # the real part, and the imaginary part of a complex
        out[start + _LONGDOUBLE_VALUE_BYTES : start + part] = bytes(part - _LONGDOUBLE_VALUE_BYTES)
    return bytes(out)


def encode(v: Any, where: str) -> Any:
    """The JSON form of value ``v`` (format §2.2.1). ``where`` names the leaf in messages ("value 'cfg/x'").

    Raises InvalidArgumentError, naming the position inside the value, for a
    type that is not stored, a subclass of a stored type (its class would be
    lost), a dict key that is not a str, a str holding a lone surrogate, a
    numpy scalar of an object dtype, or nesting deeper than VALUE_DEPTH_MAX
    (which also catches a list that contains itself).
    """
    return _enc(v, where, 0)


def _enc(v: Any, where: str, depth: int) -> Any:
    t = type(v)
    if v is None or t is bool or (t is str and _check_str(v, where)):
        return v
    if t is int:
        if _INT_LO <= v < _INT_HI:
            return v
        return {"int": format(v, "x")}
    if t is float:
        return {"float": _hex64(v)}
    if t is complex:
        return {"complex": [_hex64(v.real), _hex64(v.imag)]}
    if t is bytes:
        return {"bytes": _b64(v)}
    if isinstance(v, np.generic):
        dt = v.dtype
        if dt.hasobject:
            raise InvalidArgumentError(
                f"{where}: numpy scalar of dtype {dt} holds a Python object, which ndckpt does not store"
            )
        raw = _scalar_bytes(v) if dt.itemsize else b""  # np.bytes_(b"") is |S0, its array |S1
        return {"numpy": [encode_dtype(dt, what=where), _b64(raw)]}
    if t is list or t is tuple or t is dict:
        if depth >= VALUE_DEPTH_MAX:
            raise InvalidArgumentError(
                f"{where}: nested deeper than {VALUE_DEPTH_MAX} lists, tuples and dicts (or it contains itself)"
            )
        if t is dict:
            items = []
            for k, x in v.items():
                if type(k) is not str:
                    raise InvalidArgumentError(
                        f"{where}: dict key {k!r} is a {type(k).__name__}; dicts inside values need str keys "
                        "(convert the keys, or store the dict as a mapping of arrays)"
                    )
                _check_str(k, f"{where}: dict key")
                items.append([k, _enc(x, f"{where}[{k!r}]", depth + 1)])
            return {"dict": items}
        out = [_enc(x, f"{where}[{i}]", depth + 1) for i, x in enumerate(v)]
        return out if t is list else {"tuple": out}
    if isinstance(v, np.ndarray):
        raise InvalidArgumentError(
            f"{where}: a numpy array inside a list or tuple is not stored; put it in a dict (a group) instead, "
            "e.g. {'0': a, '1': b}"
        )
    for base in _SCALARS[:-1]:
        if isinstance(v, base):
            raise InvalidArgumentError(
                f"{where}: {t.__name__} is a subclass of {base.__name__}, and ndckpt stores {base.__name__} "
                f"itself (the class would be lost); convert it, e.g. {base.__name__}(x)"
            )
    if isinstance(v, list | tuple | dict):
        raise InvalidArgumentError(
            f"{where}: {t.__name__} is a subclass of {type(v).__mro__[1].__name__}; convert it to a plain "
            "list, tuple or dict"
        )
    raise InvalidArgumentError(f"{where}: expected {KINDS}, got {t.__name__}")


def _check_str(s: str, where: str) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError as e:
        raise InvalidArgumentError(
            f"{where}: str holds the lone surrogate U+{ord(s[e.start]):04X} at index {e.start}, which is not "
            "Unicode text and cannot be stored; store s.encode('utf-8', 'surrogatepass') as bytes instead"
        ) from None
    return True


def decode(j: Any, where: str) -> Any:
    """Inverse of :func:`encode`. Raises FormatError (naming ``where``) for any other JSON."""
    return _dec(j, where, 0)


def _dec(j: Any, where: str, depth: int) -> Any:
    t = type(j)
    if j is None or t is bool:
        return j
    if t is str:
        _dec_str(j, where)
        return j
    if t is int:
        if not _INT_LO <= j < _INT_HI:
            raise FormatError(f"{where}: integer {j} outside [-2**63, 2**63) is not in the tagged form")
        return j
    if depth >= VALUE_DEPTH_MAX:
        raise FormatError(f"{where}: value nested deeper than {VALUE_DEPTH_MAX}")
    if t is list:
        return [_dec(x, where, depth + 1) for x in j]
    if t is not dict or len(j) != 1 or next(iter(j)) not in _TAGS:
        raise FormatError(f"{where}: not a value encoding (expected one of {sorted(_TAGS)} as the only key)")
    ((tag, x),) = j.items()
    if tag == "int":
        if type(x) is not str or not _HEX_INT.fullmatch(x):
            raise FormatError(f"{where}: bad int encoding {x!r}")
        n = int(x, 16)
        if _INT_LO <= n < _INT_HI:
            raise FormatError(f"{where}: int {n} must be stored as a JSON integer, not tagged")
        return n
    if tag == "float":
        return _dec_f64(x, where)
    if tag == "complex":
        if type(x) is not list or len(x) != 2:
            raise FormatError(f"{where}: complex must be [real, imag] bit patterns")
        return complex(_dec_f64(x[0], where), _dec_f64(x[1], where))
    if tag == "bytes":
        return _dec_b64(x, where)
    if tag == "tuple":
        if type(x) is not list:
            raise FormatError(f"{where}: tuple must hold a list")
        return tuple(_dec(e, where, depth + 1) for e in x)
    if tag == "dict":
        if type(x) is not list:
            raise FormatError(f"{where}: dict must hold a list of [key, value] pairs")
        out: dict[str, Any] = {}
        for e in x:
            if type(e) is not list or len(e) != 2 or type(e[0]) is not str:
                raise FormatError(f"{where}: dict entries must be [str, value] pairs")
            if e[0] in out:
                raise FormatError(f"{where}: dict key {e[0]!r} appears twice")
            _dec_str(e[0], where)
            out[e[0]] = _dec(e[1], where, depth + 1)
        return out
    # numpy scalar
    if type(x) is not list or len(x) != 2:
        raise FormatError(f"{where}: numpy scalar must be [dtype, bytes]")
    dt = decode_dtype(x[0], what=where)
    raw = _dec_b64(x[1], where)
    if len(raw) != dt.itemsize:
        raise FormatError(f"{where}: numpy scalar of {dt} needs {dt.itemsize} bytes, got {len(raw)}")
    if not raw:
        if dt.kind not in "SU":  # (encode_dtype refuses zero-size void dtypes)
            raise FormatError(f"{where}: numpy scalar of zero-size dtype {dt}")
        return dt.type()  # np.bytes_() / np.str_(): dtype |S0 / <U0
    return np.frombuffer(bytearray(raw), dt).reshape(())[()]


def _dec_str(s: str, where: str) -> None:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        raise FormatError(f"{where}: string holds a lone surrogate") from None


def _dec_f64(x: Any, where: str) -> float:
    if type(x) is not str or not _HEX64.fullmatch(x):
        raise FormatError(f"{where}: a float must be 16 lowercase hex digits (its IEEE 754 bits), got {x!r}")
    return float(_DOUBLE.unpack(bytes.fromhex(x))[0])


def _dec_b64(x: Any, where: str) -> bytes:
    if type(x) is not str or len(x) % 4 or not _B64.fullmatch(x):
        raise FormatError(f"{where}: bad base64 {x[:40] if isinstance(x, str) else x!r}")
    try:
        b = base64.b64decode(x, validate=True)
    except (binascii.Error, ValueError):
        raise FormatError(f"{where}: bad base64") from None
    if _b64(b) != x:
        raise FormatError(f"{where}: base64 not in canonical form")
    return b


def json_metadata(v: Any, where: str = "metadata", depth: int = 0) -> Any:
    """``v`` as plain JSON data (dict with str keys, list, str, int, float, bool, None).

    numpy scalars become the Python scalars ``.item()`` gives and tuples
    become lists (JSON has no tuples). Raises InvalidArgumentError naming the
    position for anything else: NaN and infinities (not JSON), non-str keys,
    arrays, bytes, sets, or nesting deeper than VALUE_DEPTH_MAX.
    """
    if isinstance(v, np.generic) and not isinstance(v, np.void | np.datetime64 | np.timedelta64):
        v = v.item()
    t = type(v)
    if v is None or t is bool or t is int or t is str:
        if t is str:
            _check_str(v, where)
        return v
    if t is float:
        if v != v or v in (float("inf"), float("-inf")):
            raise InvalidArgumentError(
                f"{where}: {v} is not JSON; store it as a Python value or array in the arrays mapping instead"
            )
        return v
    if isinstance(v, list | tuple | dict):
        if depth >= VALUE_DEPTH_MAX:
            raise InvalidArgumentError(f"{where}: nested deeper than {VALUE_DEPTH_MAX} (or it contains itself)")
        if isinstance(v, dict):
            out: dict[str, Any] = {}
            for k, x in v.items():
                if type(k) is not str:
                    raise InvalidArgumentError(f"{where}: key {k!r} is a {type(k).__name__}; JSON object keys are str")
                out[k] = json_metadata(x, f"{where}[{k!r}]", depth + 1)
            return out
        return [json_metadata(x, f"{where}[{i}]", depth + 1) for i, x in enumerate(v)]
    raise InvalidArgumentError(
        f"{where}: {type_name(v)} is not JSON (metadata takes dicts with str keys, lists, str, int, float, "
        "bool, None and numpy scalars of those); store it in the arrays mapping instead, which keeps arrays, "
        "bytes, tuples and exact floats"
    )

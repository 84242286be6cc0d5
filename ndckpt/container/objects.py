"""Array-likes, pandas and xarray objects as plain trees of arrays and values (format §2.2.2).

ndckpt stores trees of numpy arrays and Python values. This module maps the
ecosystem's objects onto such trees and back, so every writer and reader of
the container handles them without knowing them:

* :func:`array_like` turns an object offering ``__array__``,
  ``__array_interface__``, ``__array_struct__``, ``__dlpack__`` or the buffer
  protocol (a PyTorch CPU tensor, a JAX array, ``array.array``, a
  ``memoryview``, a ``bytearray``) into a numpy array, without a copy where
  numpy allows. It comes back from a load as a numpy array.
* :func:`to_tree` turns a pandas ``Series``/``DataFrame`` or an xarray
  ``DataArray``/``Dataset`` into a group: its arrays, plus one value leaf
  named :data:`MARKER` holding a one-item list: the object's description (type, index kinds,
  names, dims, attrs...). :func:`from_tree` rebuilds the object from such a
  group, bit-exactly. A reader that does not know the marker (another
  language, an older ndckpt) sees a plain group of arrays and values.

What cannot be kept exactly is refused with :class:`InvalidArgumentError`
naming the leaf and the reason (object columns of arbitrary Python objects,
period and interval data, xarray multi-indexes...): nothing is dropped
silently. xarray's ``encoding`` dicts are kept too (numpy dtypes by name).

pandas and xarray are imported only when such an object is met (their
module is then already imported) or when a file holding one is read.
"""

from __future__ import annotations

import importlib
import sys
import warnings
from collections.abc import Callable, Mapping
from typing import Any, Final

import numpy as np

from ..errors import FormatError, InvalidArgumentError

__all__ = [
    "MARKER",
    "array_like",
    "decode_encoding",
    "from_tree",
    "is_dask",
    "is_description",
    "is_object",
    "rebuild",
    "to_tree",
    "variable_data",
]

#: The reserved name of the value leaf that marks a group as an encoded object.
MARKER: Final = "__ndckpt__"
#: Version of the description; a reader refuses a newer one.
_VERSION: Final = 1

_PANDAS: Final = frozenset({"Series", "DataFrame"})
_XARRAY: Final = frozenset({"DataArray", "Dataset"})

# Python types that are stored as values (container.values), never converted to arrays.
_VALUE_TYPES: Final = (bool, int, float, complex, str, bytes, type(None), list, tuple, dict, np.generic)


def _root(v: Any) -> str:
    return type(v).__module__.partition(".")[0]


def is_object(v: Any) -> bool:
    """Whether ``v`` is a pandas Series/DataFrame or an xarray DataArray/Dataset (by its class, nothing imported)."""
    root = _root(v)
    if root == "pandas":
        return any(c.__name__ in _PANDAS and _root_cls(c) == "pandas" for c in type(v).__mro__)
    if root == "xarray":
        return any(c.__name__ in _XARRAY and _root_cls(c) == "xarray" for c in type(v).__mro__)
    return False


def _root_cls(c: type) -> str:
    return c.__module__.partition(".")[0]


def is_description(v: Any) -> bool:
    """Whether ``v`` is a :data:`MARKER` leaf's value as :func:`to_tree` makes it (a one-item list
    of a dict with a str "type"): a tree that holds one was flattened from an object before."""
    return type(v) is list and len(v) == 1 and isinstance(v[0], dict) and isinstance(v[0].get("type"), str)


def is_dask(v: Any) -> bool:
    """Whether ``v`` is a dask array (by its class; dask is not imported)."""
    t = type(v)
    return t.__name__ == "Array" and t.__module__.partition(".")[0] == "dask"


def array_like(v: Any) -> np.ndarray[Any, Any] | None:
    """``v`` as a numpy array if it is an array-like (not a value, not a pandas/xarray object), else None.

    No copy where numpy allows one to be avoided (``np.asarray``,
    ``np.from_dlpack``, a buffer's memory). May raise whatever the object's
    own conversion raises (a GPU tensor refusing to leave its device, say),
    wrapped in InvalidArgumentError by the caller.
    """
    if isinstance(v, _VALUE_TYPES) or is_object(v):
        return None
    if hasattr(v, "__array__") or hasattr(v, "__array_interface__") or hasattr(v, "__array_struct__"):
        return np.asarray(v)
    if hasattr(v, "__dlpack__"):
        return np.from_dlpack(v)
    try:
        mv = memoryview(v)
    except TypeError:
        return None
    return np.asarray(mv)


# --------------------------------------------------------------------------------------------
# Saving: object -> tree


def to_tree(v: Any, where: str) -> dict[str, Any]:
    """The group that stores ``v`` (a pandas or xarray object); InvalidArgumentError naming ``where`` if it can't."""
    names = {c.__name__ for c in type(v).__mro__}
    if _root(v) == "pandas":
        pd: Any = importlib.import_module("pandas")
        if isinstance(v, pd.DataFrame):
            return _frame_tree(pd, v, where)
        if isinstance(v, pd.Series):
            meta, tree = _series_parts(pd, v, where)
            return {MARKER: [meta], **tree}
    if "Dataset" in names or "DataArray" in names:
        return _xarray_tree(v, where)
    raise InvalidArgumentError(f"{where}: {type(v).__name__} is not a pandas or xarray object ndckpt stores")


def _check_attrs(attrs: Any, where: str) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """(plain attrs, array attrs by position, the array attrs' keys): arrays go to frames, the rest to the head."""
    if not isinstance(attrs, Mapping):
        raise InvalidArgumentError(f"{where}: attrs must be a dict, got {type(attrs).__name__}")
    plain: dict[str, Any] = {}
    arrays: dict[str, Any] = {}
    keys: list[str] = []
    for k, x in attrs.items():
        if type(k) is not str:
            raise InvalidArgumentError(f"{where}: attrs key {k!r} is a {type(k).__name__}; ndckpt stores str keys")
        if isinstance(x, np.ndarray):
            arrays[str(len(keys))] = x
            keys.append(k)
        else:
            plain[k] = x
    return plain, arrays, keys


def _attrs_meta(attrs: Any, where: str) -> tuple[dict[str, Any], dict[str, Any]]:
    plain, arrays, keys = _check_attrs(attrs, where)
    meta: dict[str, Any] = {"attrs": plain}
    if keys:
        meta["array_attrs"] = keys
        return meta, {"attrs": arrays}
    return meta, {}


def _frame_tree(pd: Any, df: Any, where: str) -> dict[str, Any]:
    imeta, itree = _index_parts(pd, df.index, f"{where}: index")
    cmeta, ctree = _index_parts(pd, df.columns, f"{where}: columns")
    data_meta: list[Any] = []
    data_tree: dict[str, Any] = {}
    for i in range(df.shape[1]):
        m, t = _values_parts(pd, df.iloc[:, i].array, f"{where}: column {df.columns[i]!r}")
        data_meta.append(m)
        data_tree[str(i)] = t
    ameta, atree = _attrs_meta(df.attrs, f"{where}: attrs")
    meta = {"type": "pandas.DataFrame", "version": _VERSION, "index": imeta, "columns": cmeta, "data": data_meta}
    meta.update(ameta)
    return {MARKER: [meta], "index": itree, "columns": ctree, "data": data_tree, **atree}


def _series_parts(pd: Any, s: Any, where: str) -> tuple[dict[str, Any], dict[str, Any]]:
    imeta, itree = _index_parts(pd, s.index, f"{where}: index")
    vmeta, vtree = _values_parts(pd, s.array, where)
    ameta, atree = _attrs_meta(s.attrs, f"{where}: attrs")
    meta = {"type": "pandas.Series", "version": _VERSION, "name": s.name, "index": imeta, "values": vmeta}
    meta.update(ameta)
    return meta, {"index": itree, "values": vtree, **atree}


def _index_parts(pd: Any, idx: Any, where: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(description, tree) of a pandas Index."""
    if isinstance(idx, pd.RangeIndex):
        return {"index": "range", "start": idx.start, "stop": idx.stop, "step": idx.step, "name": idx.name}, {}
    if isinstance(idx, pd.MultiIndex):
        levels: list[Any] = []
        tree: dict[str, Any] = {"levels": {}, "codes": {}}
        for i, (level, codes) in enumerate(zip(idx.levels, idx.codes, strict=True)):
            m, t = _index_parts(pd, level, f"{where}: level {i}")
            levels.append(m)
            tree["levels"][str(i)] = t
            tree["codes"][str(i)] = np.asarray(codes)
        return {"index": "multi", "names": list(idx.names), "levels": levels}, tree
    if isinstance(idx, pd.PeriodIndex | pd.IntervalIndex):
        raise InvalidArgumentError(f"{where}: {type(idx).__name__} is not stored; convert it (e.g. .to_timestamp())")
    vmeta, vtree = _values_parts(pd, idx.array, where, labels=True)
    meta: dict[str, Any] = {"index": "plain", "name": idx.name, "values": vmeta}
    if isinstance(idx, pd.DatetimeIndex | pd.TimedeltaIndex) and idx.freq is not None:
        meta["freq"] = idx.freqstr
    return meta, {"values": vtree}


#: The most labels of an object index kept as a list of values in the head (column labels, mostly).
LABELS_MAX: Final = 10_000

_MASKED: Final = ("IntegerArray", "FloatingArray", "BooleanArray")


def _values_parts(pd: Any, arr: Any, where: str, labels: bool = False) -> tuple[dict[str, Any], dict[str, Any]]:
    """(description, tree) of a pandas ExtensionArray (a column, an index's values). With ``labels``
    (an index), an object array of up to LABELS_MAX hashables that are not all str is kept as a list
    of values in the description."""
    dt = arr.dtype
    if isinstance(dt, pd.CategoricalDtype):
        cmeta, ctree = _index_parts(pd, dt.categories, f"{where}: categories")
        return (
            {"kind": "category", "ordered": bool(dt.ordered), "categories": cmeta},
            {"codes": np.asarray(arr.codes), "categories": ctree},
        )
    if isinstance(dt, pd.DatetimeTZDtype):
        naive = np.asarray(arr.tz_convert("UTC").tz_localize(None))
        return {"kind": "datetimetz", "tz": str(dt.tz)}, {"data": naive}
    if isinstance(dt, pd.StringDtype):
        na = "nan" if dt.na_value is not pd.NA else "NA"
        return {"kind": "string", "storage": dt.storage, "na": na}, _strings(list(arr), where)
    if type(arr).__name__ in _MASKED:
        data = arr.to_numpy(dtype=dt.numpy_dtype, na_value=dt.numpy_dtype.type(0))
        return {"kind": "masked", "dtype": str(dt)}, {"data": data, "mask": np.asarray(arr.isna())}
    if isinstance(dt, np.dtype) or isinstance(arr, pd.arrays.NumpyExtensionArray):
        a = np.asarray(arr)
        dt = a.dtype
        if dt.kind == "O":
            items = list(a)
            strings = all(type(x) is str or x is None or (isinstance(x, float) and x != x) for x in items)
            if not strings and labels and len(items) <= LABELS_MAX:  # an index of mixed labels (int, str, tuple)
                return {"kind": "labels", "labels": items}, {}
            return {"kind": "object"}, _strings(items, where)
        return {"kind": "numpy"}, {"data": a}
    raise InvalidArgumentError(
        f"{where}: pandas dtype {dt} is not stored; convert it to a numpy, nullable, string, datetime or category dtype"
    )


def _strings(items: list[Any], where: str) -> dict[str, Any]:
    """Strings and missing values (None, NaN, pd.NA) as utf-8 bytes, offsets and a missing-kind code per item."""
    parts: list[bytes] = []
    missing = np.zeros(len(items), np.uint8)
    for i, x in enumerate(items):
        if type(x) is str:
            try:
                parts.append(x.encode("utf-8"))
            except UnicodeEncodeError:
                raise InvalidArgumentError(f"{where}: item {i} is a str holding a lone surrogate") from None
            continue
        parts.append(b"")
        if x is None:
            missing[i] = 1
        elif isinstance(x, float) and x != x:
            missing[i] = 2
        elif type(x).__name__ == "NAType":
            missing[i] = 3
        else:
            raise InvalidArgumentError(
                f"{where}: item {i} is a {type(x).__name__}; ndckpt stores object columns of str (and None/NaN) "
                "only: convert the column to a numeric, string or category dtype"
            )
    lengths = np.fromiter(map(len, parts), np.int64, len(parts))
    offsets = np.zeros(len(parts) + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return {"utf8": np.frombuffer(b"".join(parts), np.uint8).copy(), "offsets": offsets, "missing": missing}


def _xarray_tree(obj: Any, where: str) -> dict[str, Any]:
    xr: Any = importlib.import_module("xarray")
    if isinstance(obj, xr.DataArray):
        main = [(obj.name, obj.variable, "data")]
        ds_vars = [(k, v, "coord") for k, v in obj.coords.variables.items()]
        typ = "xarray.DataArray"
    elif isinstance(obj, xr.Dataset):
        main = []
        ds_vars = [(k, v, "coord" if k in obj.coords else "data") for k, v in obj.variables.items()]
        typ = "xarray.Dataset"
    else:
        raise InvalidArgumentError(f"{where}: {type(obj).__name__} is not an xarray DataArray or Dataset")
    for name, index in obj.xindexes.items():
        if type(index).__name__ != "PandasIndex":
            raise InvalidArgumentError(
                f"{where}: coordinate {name!r} has a {type(index).__name__}; ndckpt stores default (pandas) indexes "
                "only: reset it first (e.g. .reset_index())"
            )
    metas: list[Any] = []
    tree: dict[str, Any] = {"vars": {}}
    for i, (name, var, role) in enumerate(main + ds_vars):
        w = f"{where}: variable {name!r}"
        data = var.data if is_dask(var.data) else np.asarray(var.values)  # dask data stays lazy (plan.DaskBytes)
        vattrs, varrays, vkeys = _check_attrs(var.attrs, f"{w}: attrs")
        m: dict[str, Any] = {"name": name, "dims": list(var.dims), "role": role, "attrs": vattrs}
        if var.encoding:
            m["encoding"] = _encoding(var.encoding, f"{w}: encoding")
        if vkeys:
            m["array_attrs"] = vkeys
        if data.dtype.kind == "O":
            m["kind"] = "object"
            t = _strings(list(data.reshape(-1)), w)
            t["shape"] = np.asarray(data.shape, np.int64)
        else:
            m["kind"] = "numpy"
            t = {"data": data}
        if varrays:
            t["attrs"] = varrays
        metas.append(m)
        tree["vars"][str(i)] = t
    ameta, atree = _attrs_meta(obj.attrs, f"{where}: attrs")
    meta: dict[str, Any] = {"type": typ, "version": _VERSION, "vars": metas}
    if obj.encoding:
        meta["encoding"] = _encoding(obj.encoding, f"{where}: encoding")
    if typ == "xarray.DataArray":
        meta["name"] = obj.name
    meta.update(ameta)
    return {MARKER: [meta], **tree, **atree}


# --------------------------------------------------------------------------------------------
# Loading: tree -> object


def rebuild(tree: dict[str, Any], where: str = "") -> dict[str, Any]:
    """``tree`` (a load's nested result) with every marked group replaced by its object, in place."""
    for k, v in list(tree.items()):
        if isinstance(v, dict):
            w = f"{where}/{k}" if where else k
            tree[k] = from_tree(v, w) if MARKER in v else rebuild(v, w)
    return tree


def from_tree(group: dict[str, Any], where: str) -> Any:
    """The object stored by :func:`to_tree` in ``group``; FormatError naming ``where`` if the group is malformed.

    If pandas or xarray is not installed, warns and returns ``group`` itself
    (its arrays and description), so the data stays readable.
    """
    box = group.get(MARKER)
    meta = box[0] if type(box) is list and len(box) == 1 else None
    if not isinstance(meta, dict) or not isinstance(meta.get("type"), str):
        raise FormatError(f"group {where!r}: {MARKER!r} is not an object description")
    typ = meta["type"]
    version = meta.get("version")
    if type(version) is not int or version > _VERSION:
        raise FormatError(f"group {where!r}: {typ} description version {version!r}; upgrade ndckpt to read it")
    lib = typ.partition(".")[0]
    if lib not in ("pandas", "xarray") or typ.partition(".")[2] not in (_PANDAS if lib == "pandas" else _XARRAY):
        raise FormatError(f"group {where!r}: unknown object type {typ!r}; upgrade ndckpt to read it")
    if sys.modules.get(lib) is None:
        try:
            importlib.import_module(lib)
        except ImportError:
            warnings.warn(
                f"group {where!r} holds a {typ}, but {lib} is not installed: returning its arrays as a dict",
                stacklevel=3,
            )
            return group
    try:
        if lib == "pandas":
            pd: Any = importlib.import_module("pandas")
            if typ == "pandas.DataFrame":
                return _frame(pd, meta, group, where)
            return _series(pd, meta, group, where)
        return _xarray(meta, group, where)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
        raise FormatError(f"group {where!r}: malformed {typ} description ({type(e).__name__}: {e})") from None


def _attrs_of(meta: dict[str, Any], tree: dict[str, Any]) -> dict[str, Any]:
    attrs = dict(meta.get("attrs", {}))
    for i, k in enumerate(meta.get("array_attrs", [])):
        attrs[k] = tree["attrs"][str(i)]
    return attrs


def _frame(pd: Any, meta: dict[str, Any], g: dict[str, Any], where: str) -> Any:
    index = _index(pd, meta["index"], g["index"])
    columns = _index(pd, meta["columns"], g["columns"])
    if len(meta["data"]) != len(columns):
        raise ValueError(f"{len(meta['data'])} columns of data for {len(columns)} labels")
    cols = [_values(pd, m, g["data"][str(i)]) for i, m in enumerate(meta["data"])]
    df = pd.concat([pd.Series(c, index=index, copy=False, dtype=c.dtype) for c in cols], axis=1) if cols else None
    df = pd.DataFrame(index=index) if df is None else df
    df.columns = columns
    df.attrs = _attrs_of(meta, g)
    return df


def _series(pd: Any, meta: dict[str, Any], g: dict[str, Any], where: str) -> Any:
    values = _values(pd, meta["values"], g["values"])
    s = pd.Series(values, index=_index(pd, meta["index"], g["index"]), copy=False, dtype=values.dtype)
    s.name = meta["name"]
    s.attrs = _attrs_of(meta, g)
    return s


def _index(pd: Any, meta: dict[str, Any], tree: dict[str, Any]) -> Any:
    kind = meta["index"]
    if kind == "range":
        return pd.RangeIndex(meta["start"], meta["stop"], meta["step"], name=meta["name"])
    if kind == "multi":
        levels = [_index(pd, m, tree["levels"][str(i)]) for i, m in enumerate(meta["levels"])]
        codes = [tree["codes"][str(i)] for i in range(len(levels))]
        return pd.MultiIndex(levels=levels, codes=codes, names=meta["names"], verify_integrity=True)
    if kind != "plain":
        raise ValueError(f"unknown index kind {kind!r}")
    values = _values(pd, meta["values"], tree["values"])
    idx = pd.Index(values, name=meta["name"], copy=False, dtype=values.dtype)
    if "freq" in meta:
        idx.freq = meta["freq"]  # validated against the values by pandas
    return idx


def _values(pd: Any, meta: dict[str, Any], t: dict[str, Any]) -> Any:
    kind = meta["kind"]
    if kind == "numpy":
        a = t["data"]
        if a.dtype.kind in "mM":
            return pd.array(a, dtype=a.dtype, copy=False)
        return pd.arrays.NumpyExtensionArray(a)
    if kind == "category":
        cats = _index(pd, meta["categories"], t["categories"])
        dtype = pd.CategoricalDtype(cats, ordered=meta["ordered"])
        return pd.Categorical.from_codes(t["codes"], dtype=dtype, validate=True)
    if kind == "datetimetz":
        return pd.DatetimeIndex(t["data"]).tz_localize("UTC").tz_convert(meta["tz"]).array
    if kind == "string":
        na = pd.NA if meta["na"] == "NA" else np.nan
        dtype = pd.StringDtype(storage=meta["storage"], na_value=na)
        return pd.array(_unstrings(t), dtype=dtype)
    if kind == "masked":
        dtype = pd.api.types.pandas_dtype(meta["dtype"])
        return dtype.construct_array_type()(t["data"], t["mask"].astype(bool, copy=False))
    if kind in ("object", "labels"):
        items = _unstrings(t) if kind == "object" else meta["labels"]
        a = np.empty(len(items), dtype=object)
        a[:] = items  # (np.array would make tuples a second axis)
        return pd.arrays.NumpyExtensionArray(a)
    raise ValueError(f"unknown values kind {kind!r}")


_MISSING: Final = (None, None, float("nan"))


def _unstrings(t: dict[str, Any]) -> list[Any]:
    raw = t["utf8"].tobytes()
    offs = t["offsets"].tolist()
    missing = t["missing"].tolist()
    if len(offs) != len(missing) + 1 or offs[0] != 0 or offs[-1] != len(raw) or any(map(int.__gt__, offs, offs[1:])):
        raise ValueError("string offsets do not tile the utf-8 bytes")
    out: list[Any] = []
    na = None
    for i, m in enumerate(missing):
        if m == 0:
            out.append(raw[offs[i] : offs[i + 1]].decode("utf-8"))
        elif m == 3:
            if na is None:
                na = importlib.import_module("pandas").NA
            out.append(na)
        elif m in (1, 2):
            out.append(_MISSING[m])
        else:
            raise ValueError(f"missing-value code {m}")
    return out


def variable_data(m: dict[str, Any], member: Callable[[str], Any]) -> Any:
    """The data of an xarray variable described by ``m`` (a ``"vars"`` entry), its arrays got by
    ``member(name)`` ("data", "utf8", ...). ValueError for an unknown kind or bad strings."""
    if m["kind"] == "numpy":
        return member("data")
    if m["kind"] != "object":
        raise ValueError(f"unknown variable kind {m['kind']!r}")
    t = {k: member(k) for k in ("utf8", "offsets", "missing", "shape")}
    items = _unstrings(t)
    a = np.empty(len(items), dtype=object)
    a[:] = items
    return a.reshape(tuple(int(n) for n in t["shape"]))


def _xarray(meta: dict[str, Any], g: dict[str, Any], where: str) -> Any:
    xr: Any = importlib.import_module("xarray")
    data_vars: dict[Any, Any] = {}
    coords: dict[Any, Any] = {}
    main = None
    for i, m in enumerate(meta["vars"]):
        t = g["vars"][str(i)]
        data = variable_data(m, t.__getitem__)
        encoding = decode_encoding(m.get("encoding", []))
        var = xr.Variable(tuple(m["dims"]), data, attrs=_attrs_of(m, t), encoding=encoding)
        if m["role"] == "data" and meta["type"] == "xarray.DataArray":
            main = var
        elif m["role"] == "data":
            data_vars[m["name"]] = var
        else:
            coords[m["name"]] = var
    attrs = _attrs_of(meta, g)
    if meta["type"] == "xarray.DataArray":
        if main is None:
            raise ValueError("no data variable")
        out = xr.DataArray(main, coords=coords, name=meta["name"], attrs=attrs)
    else:
        out = xr.Dataset(data_vars, coords=coords, attrs=attrs)
    out.encoding = decode_encoding(meta.get("encoding", []))
    return out


def _encoding(enc: Any, where: str) -> list[list[Any]]:
    """An xarray ``encoding`` dict as [key, "dtype" or "value", value] triples (numpy dtypes by name)."""
    if not isinstance(enc, Mapping):
        raise InvalidArgumentError(f"{where}: expected a dict, got {type(enc).__name__}")
    out: list[list[Any]] = []
    for k, v in enc.items():
        if type(k) is not str:
            raise InvalidArgumentError(f"{where}: key {k!r} is a {type(k).__name__}; ndckpt stores str keys")
        out.append([k, "dtype", np.dtype(v).str] if isinstance(v, np.dtype) else [k, "value", v])
    return out


def decode_encoding(triples: list[list[Any]]) -> dict[str, Any]:
    """The ``encoding`` dict of :func:`_encoding`'s triples."""
    return {k: np.dtype(v) if kind == "dtype" else v for k, kind, v in triples}

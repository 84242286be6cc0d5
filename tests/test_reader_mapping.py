"""A Reader is a read-only Mapping shaped like load()'s dict; Groups are views; repr and HTML tables.

The property tests build random nested states (arrays of both styles, Python values, numpy
scalars, empty groups), open them and check that walking the Reader as a Mapping gives exactly
what ``ndckpt.load`` gives, group by group, without reading arrays nobody asked for.
"""

from __future__ import annotations

import html.parser
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import flat, save_bytes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ndckpt
from ndckpt import CompressionError, FormatError, Group, InvalidArgumentError, cli
from ndckpt._browse import ROWS_SHOWN

# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------


def as_dict(m: Mapping[str, Any]) -> dict[str, Any]:
    """A Reader or Group walked as a Mapping, groups turned into dicts."""
    return {k: as_dict(v) if isinstance(v, Group) else v for k, v in m.items()}


def assert_same(got: Any, want: Any, where: str = "") -> None:
    if isinstance(want, dict):
        assert isinstance(got, dict), where
        assert list(got) == sorted(want), where
        for k in want:
            assert_same(got[k], want[k], f"{where}/{k}")
    elif isinstance(want, np.ndarray):
        assert isinstance(got, np.ndarray), where
        assert got.dtype == want.dtype, where
        assert got.shape == want.shape, where
        assert got.tobytes() == want.tobytes(), where
    else:
        assert type(got) is type(want), where
        assert repr(got) == repr(want), where


STATE = {
    "fields": {"u": np.arange(64.0).reshape(8, 8), "v": np.ones(8, "f4"), "empty": {}},
    "step": 7,
    "cfg": {"name": "gray-scott", "dt": 0.25, "sizes": [1, 2, 3]},
    "counts": np.arange(5, dtype="<u2"),
    "scalar": np.float32(2.5),
}


@pytest.fixture(scope="module")
def blob() -> bytes:
    return save_bytes(STATE, style={"fields/u": "lz4"}, metadata={"run": "a", "n": [1, 2]})


# ----------------------------------------------------------------------------------------------
# The Mapping
# ----------------------------------------------------------------------------------------------


def test_reader_is_a_mapping_of_the_top_level(blob: bytes) -> None:
    with ndckpt.open(blob) as r:
        assert isinstance(r, Mapping)
        assert list(r) == ["cfg", "counts", "fields", "scalar", "step"]
        assert len(r) == 5
        assert list(r.keys()) == list(r)
        assert repr(r.keys()) == "Keys(['cfg', 'counts', 'fields', 'scalar', 'step'])"
        assert repr(r["fields"].keys()) == "Keys(['empty', 'u', 'v'])"
        assert r.keys() == {"cfg", "counts", "fields", "scalar", "step"}, "a set-like view, as a dict's"
        assert isinstance(r["fields"], Group)
        assert isinstance(r["cfg"], Group)
        assert r["step"] == 7
        assert type(r["step"]) is int
        assert type(r["scalar"]) is np.float32
        assert r["scalar"] == 2.5
        assert r["counts"].tolist() == [0, 1, 2, 3, 4]
        # arrays in storage order (RAW frames, then LZ4), then the values by path
        assert r.names() == ["counts", "fields/v", "fields/u", "cfg/dt", "cfg/name", "cfg/sizes", "scalar", "step"]


def test_paths_tuples_and_membership(blob: bytes) -> None:
    with ndckpt.open(blob) as r:
        assert r["fields/v"].tolist() == [1.0] * 8
        assert r[("fields", "v")].tolist() == [1.0] * 8
        assert r["fields"]["u"].shape == (8, 8)
        assert r["cfg"]["sizes"] == [1, 2, 3]
        for key in ["fields", "fields/u", ("fields", "u"), "fields/empty", "cfg/dt", "step"]:
            assert key in r, key
        for key in ["nope", "fields/nope", "fields/u/x", "step/x", "", "fields/", 3, None, (), ("fields", 1)]:
            assert key not in r, key
        for key in ["nope", "fields/nope", "fields/u/x", "", 3, ()]:
            with pytest.raises(KeyError):
                r[key]
        empty = r["fields/empty"]
        assert isinstance(empty, Group)
        assert len(empty) == 0
        assert list(empty) == []
        assert empty.load() == {}


def test_get_is_the_mappings(blob: bytes) -> None:
    with ndckpt.open(blob) as r:
        assert r.get("nope") is None
        sentinel = object()
        assert r.get("fields/nope", sentinel) is sentinel
        assert r.get("counts").tolist() == [0, 1, 2, 3, 4]
        assert isinstance(r.get("fields"), Group)


def test_read_with_out_and_region(blob: bytes) -> None:
    with ndckpt.open(blob) as r:
        out = np.empty((8, 8))
        assert r.read("fields/u", out) is out
        assert out.tolist() == STATE["fields"]["u"].tolist()  # type: ignore[index]
        g = r["fields"]
        assert g.read("u", region=(slice(2, 4),)).tolist() == STATE["fields"]["u"][2:4].tolist()  # type: ignore[index]
        o2 = np.empty(8, "f4")
        assert g.read("v", out=o2) is o2
        with pytest.raises(InvalidArgumentError, match="is a group"):
            r.read("fields")
        with pytest.raises(KeyError):
            r.read("fields/nope")
        with pytest.raises(InvalidArgumentError, match="Python value"):
            r.read("step", region=(slice(0, 1),))


def test_groups_load_like_load(blob: bytes) -> None:
    whole = ndckpt.load(blob)
    with ndckpt.open(blob) as r:
        assert_same(as_dict(r), whole)
        assert_same(r["fields"].load(), whole["fields"])
        assert_same(r["cfg"].load(), whole["cfg"])
        assert r["fields"].names() == ["u", "v"]
        assert r["cfg"].names() == ["dt", "name", "sizes"]
        assert r["fields"].path == "fields"
        u = np.empty((8, 8))
        got = r["fields"].load(out={"u": u})
        assert got["u"] is u
        assert u.tolist() == STATE["fields"]["u"].tolist()
        with pytest.raises(InvalidArgumentError, match="fields/nope"):
            r["fields"].load(out={"nope": u})


def test_identity_equality_and_hashing(blob: bytes) -> None:
    with ndckpt.open(blob) as r, ndckpt.open(blob) as r2:
        assert r == r
        assert r != r2
        assert len({r, r2}) == 2
        assert r["fields"] == r["fields"]
        assert hash(r["fields"]) == hash(r["fields"])
        assert r["fields"] != r2["fields"]
        assert r["fields"] != r["cfg"]


def test_closed_reader(blob: bytes) -> None:
    r = ndckpt.open(blob)
    g = r["fields"]
    r.close()
    assert list(r) == ["cfg", "counts", "fields", "scalar", "step"], "the names stay known"
    assert "(closed)" in repr(r)
    assert "(closed)" in repr(g)
    with pytest.raises(InvalidArgumentError, match="closed"):
        g["u"]
    with pytest.raises(InvalidArgumentError, match="closed"):
        r["counts"]


def test_mapping_access_reads_only_what_is_asked(tmp_path: Path) -> None:
    """A damaged LZ4 frame does not stop the listing, nor reads of other arrays."""
    bad = np.arange(1 << 16, dtype="<u4")
    data = bytearray(save_bytes({"bad": bad, "good": {"x": np.arange(3)}}, style={"bad": "lz4"}))
    with ndckpt.open(bytes(data)) as r:
        row = next(row for row in r.info() if row["name"] == "bad")
    data[row["offsets"][0] + row["stored_nbytes"] // 2] ^= 0xFF
    with ndckpt.open(bytes(data)) as r:  # (LZ4 frames are checksummed by default)
        assert list(r) == ["bad", "good"]
        assert "bad" in repr(r)
        assert "<td" in r._repr_html_()
        assert r["good"]["x"].tolist() == [0, 1, 2]
        with pytest.raises((CompressionError, FormatError)):
            r["bad"]


# ----------------------------------------------------------------------------------------------
# Property: the Mapping view equals load(), at every group
# ----------------------------------------------------------------------------------------------

_names = st.text(st.sampled_from("ab.-_xé中"), min_size=1, max_size=3)
_leaves = st.one_of(
    st.builds(lambda n, d: np.arange(n, dtype=d), st.integers(0, 300), st.sampled_from(["<i4", ">f8", "u1"])),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False),
    st.text(max_size=5),
    st.none(),
    st.lists(st.integers(0, 9), max_size=3),
    st.builds(np.int16, st.integers(-5, 5)),
)
_trees = st.recursive(
    st.dictionaries(_names, _leaves, max_size=3),
    lambda sub: st.dictionaries(_names, st.one_of(_leaves, sub), max_size=4),
    max_leaves=12,
)


def _check_groups(m: Mapping[str, Any], want: dict[str, Any], prefix: str) -> None:
    assert list(m) == sorted(want)
    assert len(m) == len(want)
    for k, v in want.items():
        item = m[k]
        assert k in m
        if isinstance(v, dict):
            assert isinstance(item, Group)
            assert item.path == prefix + k
            assert item.names() == sorted(flat(v), key=lambda n: tuple(n.split("/")))
            assert_same(item.load(), v, prefix + k)
            _check_groups(item, v, f"{prefix}{k}/")
        else:
            assert_same(item, v, prefix + k)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=_trees, lz4=st.booleans())
def test_mapping_matches_load(tree: dict[str, Any], lz4: bool) -> None:
    blob = save_bytes(tree, style="lz4" if lz4 else "raw")
    whole = ndckpt.load(blob)
    with ndckpt.open(blob) as r:
        _check_groups(r, whole, "")
        assert sorted(r.names()) == sorted(flat(whole))
        for name, want in flat(whole).items():
            assert name in r
            assert_same(r[name], want, name)
            assert_same(r[tuple(name.split("/"))], want, name)
        text, page = repr(r), r._repr_html_()
        assert (text.startswith("<ndckpt.Reader") and "<table>" in page) or not flat(whole)


# ----------------------------------------------------------------------------------------------
# repr and the HTML table
# ----------------------------------------------------------------------------------------------


class _Table(html.parser.HTMLParser):
    """Collects the cell texts of each table's rows, and every tag seen."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self.tags: list[str] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        self.tags.append(tag)
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def parse(page: str) -> _Table:
    t = _Table()
    t.feed(page)
    return t


def test_repr_shows_the_table(blob: bytes) -> None:
    with ndckpt.open(blob) as r:
        text = repr(r)
    lines = text.splitlines()
    assert lines[0].startswith("<ndckpt.Reader of a ")
    assert "3 arrays, 5 values, 3 groups" in lines[0]
    assert re.split(r"\s+", lines[1].strip()) == ["name", "dtype", "shape", "style", "size", "stored", "ratio"]
    row = next(line for line in lines if line.strip().startswith("fields/u"))
    assert re.split(r"\s{2,}", row.strip())[:4] == ["fields/u", "float64", "(8, 8)", "lz4"]
    assert "512 B" in row
    raw_row = next(line for line in lines if line.strip().startswith("counts"))
    assert re.split(r"\s{2,}", raw_row.strip()) == ["counts", "uint16", "(5,)", "raw", "10 B", "10 B", "1.00"]
    assert any(line.split() == ["cfg/name", "str", "'gray-scott'"] for line in lines)
    assert any(line.split() == ["scalar", "np.float32", "np.float32(2.5)"] for line in lines)
    assert lines[-1] == "  metadata: {'n': [1, 2], 'run': 'a'}"


def test_path_readers_name_their_file(tmp_path: Path) -> None:
    p = tmp_path / "s.ndckpt"
    ndckpt.save(p, {"a": np.zeros(3)})
    with ndckpt.open(p) as r:
        assert repr(r).startswith(f"<ndckpt.Reader {str(p)!r}: 1 array, 0 values;")
        assert repr(r["a"].base is not None)  # (an array, not a group)


def test_html_table(blob: bytes) -> None:
    with ndckpt.open(blob) as r:
        page = r._repr_html_()
        gpage = r["fields"]._repr_html_()
    t = parse(page)
    arrays, values = t.tables
    assert arrays[0] == ["name", "dtype", "shape", "style", "size", "stored", "ratio"]
    assert [row[0] for row in arrays[1:]] == ["counts", "fields/u", "fields/v"]
    assert arrays[1] == ["counts", "uint16", "(5,)", "raw", "10 B", "10 B", "1.00"]
    assert values[0] == ["value", "type", "repr"]
    assert ["step", "int", "7"] in values
    g = parse(gpage)
    assert [row[0] for row in g.tables[0][1:]] == ["u", "v"]
    assert "group 'fields'" in gpage


def test_names_from_the_file_are_escaped() -> None:
    evil = "\x1b]0;pwned\x07<script>alert(1)\x1b[2J"
    blob = save_bytes({evil: np.zeros(2), "v": {evil: "<b>&"}})
    with ndckpt.open(blob) as r:
        text, page, gtext = repr(r), r._repr_html_(), repr(r["v"])
    for shown in (text, gtext):
        assert "\x1b" not in shown
        assert "\x07" not in shown
        assert "\\x1b]0;pwned\\x07" in shown
    assert "<script>" not in page
    assert "&lt;script&gt;" in page
    assert "\x1b" not in page
    assert "&lt;b&gt;&amp;" in page
    t = parse(page)
    assert set(t.tags) <= {"div", "p", "b", "table", "thead", "tbody", "tr", "th", "td", "code"}


def test_long_listings_are_cut() -> None:
    n = ROWS_SHOWN + 7
    blob = save_bytes({"a": {f"x{i:03d}": np.arange(i % 3) for i in range(n)}, "v": {f"y{i:03d}": i for i in range(n)}})
    with ndckpt.open(blob) as r:
        text, page = repr(r), r._repr_html_()
        assert len(text.splitlines()) < 2 * ROWS_SHOWN + 8
    assert "... and 7 more arrays" in text
    assert "... and 7 more values" in text
    t = parse(page)
    assert len(t.tables[0]) == 1 + ROWS_SHOWN + 1
    assert t.tables[0][-1] == ["... and 7 more arrays"]
    assert len(t.tables[1]) == 1 + ROWS_SHOWN + 1
    assert t.tables[1][-1] == ["... and 7 more values"]
    long_value = save_bytes({"s": "z" * 500})
    with ndckpt.open(long_value) as r:
        row = next(line for line in repr(r).splitlines() if line.strip().startswith("s "))
    assert len(row) < 90
    assert row.endswith("...")


# ----------------------------------------------------------------------------------------------
# Command line and docs
# ----------------------------------------------------------------------------------------------


def test_cli_extract_of_a_group_lists_its_arrays(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "s.ndckpt"
    ndckpt.save(p, {"g": {"a": np.zeros(2), "b": np.ones(2)}})
    assert cli.main(["extract", str(p), "g", "-o", str(tmp_path / "g.npy")]) == 1
    err = capsys.readouterr().err
    assert "'g' is a group" in err
    assert "g/a, g/b" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "g.npy").exists()


def test_cli_info_escapes_value_names(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "s.ndckpt"
    ndckpt.save(p, {"cfg": {"t\x1b]0;x\x07": "v\x1b[2J"}})
    assert cli.main(["info", str(p)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out
    assert "\x07" not in out
    assert "t\\x1b]0;x\\x07" in out


def test_guide_browsing_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    page = (Path(__file__).parent.parent / "docs" / "guide.md").read_text()
    section = page.split("## Browsing a checkpoint", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```python\n(.*?)```", section, re.DOTALL)
    exec(compile(block, "guide.md: Browsing a checkpoint", "exec"), {})
    assert "fields/u" in capsys.readouterr().out

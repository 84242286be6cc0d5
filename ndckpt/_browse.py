"""Browsing an open checkpoint: the nested-name tree, group views, and how a Reader shows itself.

A file's leaves (arrays, Python values, empty groups) have paths; :class:`Tree` turns them into
nested dicts once, on first use, so that ``reader["group"]`` is a :class:`Group`: a read-only
``Mapping`` of the group's members. Nothing here reads array data; a :class:`Group` asks its
owner (a :class:`TreeOwner`, in practice :class:`ndckpt.Reader`) for items.

Text shown (``repr``, the notebook's HTML table) passes through :func:`ndckpt._text.show` or
``html.escape``: a name or value from a file never reaches a terminal or a page unescaped.
"""

from __future__ import annotations

import html
from collections.abc import Iterator, KeysView, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ._progress import format_bytes
from ._text import show

#: Rows a ``repr`` or an HTML table shows before "... and N more".
ROWS_SHOWN = 30
#: Characters of a value's ``repr`` shown in a table.
VALUE_CHARS = 60

#: A tree node: a group's members by name. A leaf is an int: an array's index ``i >= 0``, or the
#: Python value ``-1 - i`` (index ``i`` into the head's values); an empty group is ``{}``.
Node = dict[str, "Node | int"]


def split_key(key: object) -> tuple[str, ...]:
    """``"a/b"`` or ``("a", "b")`` -> ``("a", "b")``; KeyError for anything else (not a name)."""
    if isinstance(key, str):
        return tuple(key.split("/"))
    if isinstance(key, tuple) and key and all(isinstance(k, str) for k in key):
        return key
    raise KeyError(key)


def build_tree(
    arrays: Sequence[tuple[str, ...]], values: Sequence[tuple[str, ...]], groups: Sequence[tuple[str, ...]]
) -> Node:
    """The nested dicts of a validated head's paths (no path lies inside a leaf: the head checked
    it), members of every group in sorted order."""
    entries: list[tuple[tuple[str, ...], Node | int]] = [(p, i) for i, p in enumerate(arrays)]
    entries += [(p, -1 - i) for i, p in enumerate(values)]
    entries += [(g, {}) for g in groups]
    entries.sort(key=lambda e: e[0])
    root: Node = {}
    for path, leaf in entries:
        node = root
        for k in path[:-1]:
            nxt = node.setdefault(k, {})
            assert isinstance(nxt, dict)  # the head refused a path inside a leaf
            node = nxt
        node[path[-1]] = {} if isinstance(leaf, dict) else leaf
    return root


def walk(node: Node, prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Node | int]]:
    """Every member below ``node`` in sorted (depth-first) order, groups before their members."""
    stack: list[Iterator[tuple[str, Node | int]]] = [iter(node.items())]
    path: list[str] = list(prefix)
    while stack:
        item = next(stack[-1], None)
        if item is None:
            stack.pop()
            if len(path) > len(prefix):
                path.pop()
            continue
        k, v = item
        yield (*path, k), v
        if isinstance(v, dict):
            path.append(k)
            stack.append(iter(v.items()))


@dataclass
class Listing:
    """What a Reader or a Group shows: its rows (at most :data:`ROWS_SHOWN` of each kind) and totals."""

    title: str
    arrays: list[tuple[str, str, str, str, int, int]] = field(default_factory=list)
    values: list[tuple[str, str, str]] = field(default_factory=list)
    narrays: int = 0
    nvalues: int = 0
    ngroups: int = 0
    nbytes: int = 0
    stored: int = 0
    metadata: str | None = None

    def summary(self) -> str:
        parts = [_count(self.narrays, "array"), _count(self.nvalues, "value")]
        if self.ngroups:
            parts.append(_count(self.ngroups, "group"))
        sizes = f"{format_bytes(self.nbytes)} -> {format_bytes(self.stored)} stored"
        if self.stored:
            sizes += f" (ratio {self.nbytes / self.stored:.2f})"
        return f"{', '.join(parts)}; {sizes}"


def _count(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _ratio(nbytes: int, stored: int) -> str:
    return f"{nbytes / stored:.2f}" if stored else "-"


def short_repr(v: Any) -> str:
    """``repr(v)``, escaped (:func:`show`), cut to :data:`VALUE_CHARS` characters."""
    text = show(repr(v))
    return text if len(text) <= VALUE_CHARS else text[: VALUE_CHARS - 3] + "..."


_ARRAY_HEADER = ("name", "dtype", "shape", "style", "size", "stored", "ratio")


def _array_cells(row: tuple[str, str, str, str, int, int]) -> tuple[str, ...]:
    name, dtype, shape, style, nbytes, stored = row
    return (name, dtype, shape, style, format_bytes(nbytes), format_bytes(stored), _ratio(nbytes, stored))


def text(listing: Listing) -> str:
    """A plain-text table (``repr``): a summary line, the arrays, the values, the metadata."""
    lines = [f"<{show(listing.title)}: {listing.summary()}>"]
    if listing.arrays:
        table = [_ARRAY_HEADER, *(tuple(map(show, _array_cells(r))) for r in listing.arrays)]
        widths = [max(len(r[i]) for r in table) for i in range(len(_ARRAY_HEADER))]
        right = {4, 5, 6}
        for r in table:
            cells = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))]
            lines.append("  " + "  ".join(cells).rstrip())
        if listing.narrays > len(listing.arrays):
            lines.append(f"  ... and {listing.narrays - len(listing.arrays)} more arrays")
    if listing.values:
        vt = [("value", "type", "repr"), *((show(n), show(t), v) for n, t, v in listing.values)]
        widths = [max(len(r[i]) for r in vt) for i in range(2)]
        for n, t, v in vt:
            lines.append(f"  {n.ljust(widths[0])}  {t.ljust(widths[1])}  {v}".rstrip())
        if listing.nvalues > len(listing.values):
            lines.append(f"  ... and {listing.nvalues - len(listing.values)} more values")
    if listing.metadata is not None:
        lines.append(f"  metadata: {listing.metadata}")
    return "\n".join(lines)


def html_table(listing: Listing) -> str:
    """An HTML table (``_repr_html_``); every text from the file is escaped."""

    def e(t: str) -> str:
        return html.escape(show(t), quote=False)

    out = [
        '<div class="ndckpt-listing"><p><b>' + e(listing.title) + "</b>: " + e(listing.summary()) + "</p>",
    ]
    if listing.arrays:
        out.append("<table><thead><tr>" + "".join(f"<th>{h}</th>" for h in _ARRAY_HEADER) + "</tr></thead><tbody>")
        for r in listing.arrays:
            cells = _array_cells(r)
            out.append(
                "<tr>"
                + "".join(
                    f'<td style="text-align:{"right" if i >= 4 else "left"}">{e(c)}</td>' for i, c in enumerate(cells)
                )
                + "</tr>"
            )
        if listing.narrays > len(listing.arrays):
            more = listing.narrays - len(listing.arrays)
            out.append(f'<tr><td colspan="7">... and {more} more arrays</td></tr>')
        out.append("</tbody></table>")
    if listing.values:
        out.append("<table><thead><tr><th>value</th><th>type</th><th>repr</th></tr></thead><tbody>")
        for n, t, v in listing.values:
            out.append(f"<tr><td>{e(n)}</td><td>{e(t)}</td><td><code>{e(v)}</code></td></tr>")
        if listing.nvalues > len(listing.values):
            out.append(f'<tr><td colspan="3">... and {listing.nvalues - len(listing.values)} more values</td></tr>')
        out.append("</tbody></table>")
    if listing.metadata is not None:
        out.append("<p>metadata: <code>" + e(listing.metadata) + "</code></p>")
    out.append("</div>")
    return "\n".join(out)


class Keys(KeysView[str]):
    """The names of a Reader's or a Group's members, shown as a list (not as the whole table)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({list(self)!r})"


class TreeOwner(Protocol):
    """What a :class:`Group` needs from the object that read the file."""

    def _node(self, path: tuple[str, ...]) -> Node: ...

    def _item(self, path: tuple[str, ...]) -> Any: ...

    def _listing(self, path: tuple[str, ...]) -> Listing: ...

    def _load_group(self, path: tuple[str, ...], out: Mapping[str, Any] | None) -> dict[str, Any]: ...

    def read(self, name: str | tuple[str, ...], out: Any = None, *, region: Any = None) -> Any: ...


class Group(Mapping[str, Any]):
    """A read-only view of one group of an open checkpoint: a ``Mapping`` of its members.

    ``group[name]`` is an array (as :meth:`ndckpt.Reader.read` returns it), a Python value, or a
    nested Group; ``name`` may be a path (``"b/c"``) relative to the group. Iteration gives the
    members' names in sorted order. A Group reads through the :class:`ndckpt.Reader` it came
    from and fails as that Reader does once closed. Two Groups are equal when they are the same
    group of the same Reader.
    """

    __slots__ = ("_owner", "_path")

    def __init__(self, owner: TreeOwner, path: tuple[str, ...]) -> None:
        self._owner = owner
        self._path = path

    @property
    def path(self) -> str:
        """The group's path in the file, joined by ``/``."""
        return "/".join(self._path)

    def __getitem__(self, key: str | tuple[str, ...]) -> Any:
        return self._owner._item((*self._path, *split_key(key)))

    def __iter__(self) -> Iterator[str]:
        return iter(self._owner._node(self._path))

    def keys(self) -> Keys:
        return Keys(self)

    def __len__(self) -> int:
        return len(self._owner._node(self._path))

    def __contains__(self, key: object) -> bool:
        try:
            path = split_key(key)
        except KeyError:
            return False
        node: Node | int = self._owner._node(self._path)
        for k in path:
            if not isinstance(node, dict) or k not in node:
                return False
            node = node[k]
        return True

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Group) and other._owner is self._owner and other._path == self._path

    def __hash__(self) -> int:
        return hash((id(self._owner), self._path))

    def read(self, name: str | tuple[str, ...], out: Any = None, *, region: Any = None) -> Any:
        """:meth:`ndckpt.Reader.read` of the member ``name`` (a path relative to the group)."""
        return self._owner.read((*self._path, *split_key(name)), out, region=region)

    def names(self) -> list[str]:
        """Every leaf below the group (arrays and values), as paths relative to it, sorted by path."""
        return ["/".join(p) for p, v in walk(self._owner._node(self._path)) if not isinstance(v, dict)]

    def load(self, *, out: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The group's members as a nested dict, as :func:`ndckpt.load` gives the whole file;
        ``out`` as in :func:`ndckpt.load`, with names relative to the group."""
        return self._owner._load_group(self._path, out)

    def __repr__(self) -> str:
        return text(self._owner._listing(self._path))

    def _repr_html_(self) -> str:
        return html_table(self._owner._listing(self._path))

"""Text that is safe to print: what a file holds (names, dtypes, values) reaches a terminal or a
notebook only through here."""

from __future__ import annotations

_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def show(s: str) -> str:
    """``s`` safe to print on a terminal, on one line: printable characters as they are, every other
    one (C0/C1 controls, DEL, format characters, lone surrogates, unassigned code points, line and
    paragraph separators) as a backslash escape like ``repr`` makes (``\\x1b``, ``\\u202e``)."""
    if s.isprintable():
        return s
    out = []
    for ch in s:
        if ch.isprintable():
            out.append(ch)
        elif ch in _NAMED_ESCAPES:
            out.append(_NAMED_ESCAPES[ch])
        else:
            o = ord(ch)
            out.append(f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}" if o < 0x10000 else f"\\U{o:08x}")
    return "".join(out)

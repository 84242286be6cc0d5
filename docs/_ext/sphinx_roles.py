"""Griffe extension: render Sphinx roles in docstrings as API cross-references.

ndckpt's docstrings are numpydoc, and numpydoc text uses Sphinx roles such as
``:class:`Checkpt``` or ``:func:`~ndckpt.save```, which Markdown would print
literally. After the package is loaded, this extension rewrites every role in
every docstring into an *optional* autorefs cross-reference:

- the target is resolved in the scope of the object that holds the docstring
  (its members, then its parents'), so ``:meth:`stream``` in a class docstring
  means that class's ``stream``; aliases (re-exports) resolve to the object
  they point to;
- ``~a.b.c`` displays as ``c``, anything else as written;
- the reference is *optional*: when the target is rendered somewhere in the
  site it becomes a link, otherwise plain code, never a warning. Docstrings
  may therefore mention private helpers or other libraries freely.

Enabled in ``mkdocs.yml`` under the python handler's ``extensions``.
"""

from __future__ import annotations

import html
import re
from typing import Any

from griffe import Extension, GriffeLoader, Module, Object

_ROLE = re.compile(r":(?:py:)?(?:func|meth|class|mod|attr|exc|data|obj|const):`(?P<target>[^`]+)`")


def _canonical(loader: GriffeLoader, path: str) -> str:
    """Follow aliases (e.g. ``ndckpt.Checkpt``) to the path of the object itself."""
    try:
        obj = loader.modules_collection.get_member(path)
    except Exception:  # not part of the loaded packages: leave it as is
        return path
    try:
        return str(obj.final_target.path) if obj.is_alias else str(obj.path)
    except Exception:  # an alias to something that was not loaded
        return path


def _resolve(obj: Object, loader: GriffeLoader, target: str) -> str:
    head, _, rest = target.partition(".")
    scope: Any = obj
    try:
        base = scope.resolve(head)
    except Exception:  # unknown in scope: take the dotted name as given
        return _canonical(loader, target)
    return _canonical(loader, f"{base}.{rest}" if rest else base)


def _rewrite(obj: Object, loader: GriffeLoader) -> None:
    doc = obj.docstring
    if doc is None or ":`" not in doc.value:
        return

    def repl(m: re.Match[str]) -> str:
        target = m["target"].strip()
        short = target.startswith("~")
        target = target.lstrip("~.")
        shown = target.rsplit(".", 1)[-1] if short else target
        ident = _resolve(obj, loader, target)
        return (
            f'<autoref identifier="{html.escape(ident, quote=True)}" optional>'
            f"<code>{html.escape(shown)}</code></autoref>"
        )

    doc.value = _ROLE.sub(repl, doc.value)


class SphinxRoles(Extension):
    """Rewrite Sphinx roles once the whole package is loaded (so every target can resolve)."""

    def on_package(self, *, pkg: Module, loader: GriffeLoader, **kwargs: Any) -> None:
        seen: set[int] = set()

        def walk(obj: Object) -> None:
            if id(obj) in seen:
                return
            seen.add(id(obj))
            _rewrite(obj, loader)
            for member in obj.members.values():
                if not member.is_alias:
                    walk(member)  # type: ignore[arg-type]

        walk(pkg)

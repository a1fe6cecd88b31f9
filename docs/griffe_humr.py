"""A Griffe extension that lets mkdocstrings render humr's docstrings as they are written.

humr's docstrings are Google style (``Args:``, ``Returns:``, ``Raises:``) with a few
reStructuredText habits that Markdown does not know. This extension rewrites the docstring
text before mkdocstrings parses it; the source files are never touched.

- Sphinx roles (``:class:`~humr.x.Y```, ``:func:`f```, ``:meth:`Title <target>```) become
  inline code that links to the object's API entry when the site has one (an *optional*
  autorefs link: no warning when the target is not documented here).
- ``Example:`` and ``Example (note):`` section titles become ``Examples:``, so that the
  ``>>>`` lines render as code blocks.
- RST simple tables (``====  ====`` borders) become Markdown tables.
- In an ``Args:`` section, a line at the items' indentation that names no argument (no
  ``name:``) continues the item above, as its author meant; it is indented one step further.

Loaded by ``mkdocs.yml`` (``plugins.mkdocstrings.handlers.python.options.extensions``).
"""

from __future__ import annotations

import html
import re

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|attr|data|exc|obj|const):`([^`]+)`")
_EXAMPLE = re.compile(r"^(?P<indent>\s*)Example(?:s)?(?:\s*\((?P<note>[^)]*)\))?:\s*$")
_ARGS = re.compile(r"^(?P<indent>\s*)(?:Args|Arguments|Parameters|Params|Keyword Args):\s*$")
_ITEM = re.compile(r"^\s*\**[\w, *]+(?:\s*\([^)]*\))?:(?:\s|$)")
_BORDER = re.compile(r"^\s*=+(?:\s+=+)+\s*$")
#: Top-level names that are complete identifiers already.
_ABSOLUTE = ("humr.", "torch.", "nflows.", "numpy.", "lightning.", "smplx.", "roma.")


def _target(raw: str, context: griffe.Object) -> tuple[str, str]:
    """``(identifier, title)`` of a role's content ``raw`` written inside ``context``."""
    raw = " ".join(raw.split())
    explicit = re.fullmatch(r"(?P<title>.+?)\s*<(?P<target>[^>]+)>", raw)
    if explicit:
        target, title = explicit["target"].lstrip("~"), explicit["title"]
    else:
        short = raw.startswith("~")
        target = raw.lstrip("~").rstrip("()")
        title = target.rsplit(".", 1)[-1] if short else target
        if raw.endswith("()"):
            title += "()"
    if target.startswith(_ABSOLUTE):
        return target, title
    # A relative name: look it up from the object outwards (class, module, package).
    scope: griffe.Object | None = context
    while scope is not None:
        head = target.split(".", 1)[0]
        if head in scope.members:
            member = scope.members[head]
            base = member.target_path if member.is_alias else member.path
            rest = target.split(".", 1)[1:]
            return ".".join([base, *rest]), title
        scope = scope.parent
    return target, title


def _roles(text: str, context: griffe.Object) -> str:
    def link(match: re.Match) -> str:
        identifier, title = _target(match[1], context)
        code = f"<code>{html.escape(title)}</code>"
        return f'<autoref identifier="{html.escape(identifier)}" optional>{code}</autoref>'

    return _ROLE.sub(link, text)


def _examples(lines: list[str]) -> list[str]:
    out: list[str] = []
    for i, line in enumerate(lines):
        match = _EXAMPLE.match(line)
        if not match:
            out.append(line)
            continue
        out.append(f"{match['indent']}Examples:")
        if match["note"]:
            body = next((n for n in lines[i + 1 :] if n.strip()), match["indent"] + "    ")
            indent = body[: len(body) - len(body.lstrip())]
            out.append(f"{indent}{match['note'][0].upper()}{match['note'][1:]}:")
            out.append("")
    return out


def _continuations(lines: list[str]) -> list[str]:
    out: list[str] = []
    section: int | None = None  # the Args title's indentation while inside one
    item: int | None = None  # the items' indentation
    for line in lines:
        stripped = line.lstrip()
        indent = len(line) - len(stripped)
        if stripped and section is not None and indent <= section:
            section = item = None
        if section is None:
            match = _ARGS.match(line)
            if match:
                section = len(match["indent"])
            out.append(line)
            continue
        if stripped and item is None:
            item = indent
        if stripped and indent == item and not _ITEM.match(line):
            line = " " * 4 + line
        out.append(line)
    return out


def _cells(row: str, starts: list[int]) -> list[str]:
    """The cells of one table row: the text from each column's start to the next column's."""
    stops = [*starts[1:], len(row)]
    return [row[start:stop].strip() for start, stop in zip(starts, stops)]


def _tables(lines: list[str]) -> list[str]:
    """RST simple tables (border, header, border, rows, border) -> Markdown tables."""
    out: list[str] = []
    i = 0
    while i < len(lines):
        if not (_BORDER.match(lines[i]) and i + 2 < len(lines) and _BORDER.match(lines[i + 2])):
            out.append(lines[i])
            i += 1
            continue
        border = lines[i]
        indent = border[: len(border) - len(border.lstrip())]
        starts = [m.start() for m in re.finditer(r"=+", border)]
        header = _cells(lines[i + 1], starts)
        rows: list[list[str]] = []
        j = i + 3
        while j < len(lines) and not _BORDER.match(lines[j]):
            if lines[j].strip():
                row = _cells(lines[j], starts)
                if rows and not row[0]:  # a continuation line: extend the row above
                    rows[-1] = [f"{a} {b}".strip() for a, b in zip(rows[-1], row)]
                else:
                    rows.append(row)
            j += 1
        out.append(indent + "| " + " | ".join(header) + " |")
        out.append(indent + "|" + "|".join(" --- " for _ in header) + "|")
        out.extend(indent + "| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows)
        i = j + 1
    return out


def rewrite(text: str, context: griffe.Object) -> str:
    """The docstring ``text`` of ``context`` in the Markdown mkdocstrings renders."""
    lines = _tables(_continuations(_examples(text.split("\n"))))
    return _roles("\n".join(lines), context)


_COMMENT = re.compile(r"^\s*#:\s?(?P<text>.*)$")
_TRAILING = re.compile(r"#:\s?(?P<text>.*)$")


def _attribute_comment(attr: griffe.Object) -> str | None:
    """The Sphinx-style ``#:`` comment of an attribute: the lines right above it, or a trailing one."""
    if attr.lineno is None or attr.filepath is None:
        return None
    try:
        source = attr.lines_collection[attr.filepath]
    except KeyError:
        return None
    first = attr.lineno - 1  # 0-based
    above: list[str] = []
    k = first - 1
    while k >= 0 and (match := _COMMENT.match(source[k])):
        above.insert(0, match["text"])
        k -= 1
    if above:
        return "\n".join(above)
    last = (attr.endlineno or attr.lineno) - 1
    match = _TRAILING.search(source[last]) if last < len(source) else None
    return match["text"] if match else None


class HumrDocstrings(griffe.Extension):
    """Rewrite every docstring once the object tree is complete (see the module docstring), and
    give attributes documented by a ``#:`` comment that comment as their docstring."""

    def on_object(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.is_alias:
            return
        if obj.docstring is None and obj.is_attribute:
            text = _attribute_comment(obj)
            if text:
                obj.docstring = griffe.Docstring(text, parent=obj, lineno=obj.lineno, endlineno=obj.lineno)
        if obj.docstring is not None:
            obj.docstring.value = rewrite(obj.docstring.value, obj)

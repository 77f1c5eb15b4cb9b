"""CQL2 text and JSON to pygeofilter's AST, with the patches its grammar needs and the bounds
on size and nesting (every failure an InvalidInput that the OGC routes answer with 400).

pygeofilter parses the draft grammar our clients send (infix temporal predicates, ENVELOPE);
what it lacks is patched here, before it parses: a doubled quote inside a text literal, a bare
DWITHIN(...) as a predicate, CQL2 1.0 JSON's 3-argument BETWEEN, `bbox` literals (their axis
order), T_DISJOINT, lower-case isNull. The cql2 package was weighed against these patches
(docs/decisions.md, "CQL2 parsing stays with pygeofilter").
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from typing import Any

import orjson
from pygeofilter import ast
from pygeofilter.parsers.cql2_json import parse as parse_json
from pygeofilter.parsers.cql2_text import parse as parse_text

from app.errors import InvalidInput

MAX_FILTER_CHARS = 20_000
MAX_DEPTH = 40  # nesting of the expression (parentheses, JSON objects, AST levels)
MAX_NODES = 1_000  # AST nodes in one filter
MAX_LIST = 500  # values in one IN list
LANGS = ("cql2-text", "cql2-json")
# the draft names GDAL up to 3.7 sends; same grammar as far as we accept it
ALIASES = {"cql-text": "cql2-text", "cql-json": "cql2-json"}


def bad(detail: str, **extra: Any) -> InvalidInput:
    """An InvalidInput about the filter."""
    return InvalidInput(detail, field="filter", **extra)


def parse(text: str, lang: str | None) -> ast.Node:
    """The AST of a filter in cql2-text (default) or cql2-json; InvalidInput on any problem."""
    lang = ALIASES.get(lang or "cql2-text", lang or "cql2-text")
    if lang not in LANGS:
        raise InvalidInput(
            f"filter-lang '{lang[:40]}' is not one of {', '.join(LANGS)}", field="filter-lang"
        )
    if len(text) > MAX_FILTER_CHARS:
        raise bad(f"filter is longer than {MAX_FILTER_CHARS} characters")
    if not text.strip():
        raise bad("filter is empty")
    node = _parse_json(text) if lang == "cql2-json" else _parse_text(text)
    if not isinstance(node, ast.Node):
        raise bad("filter is not a condition (a predicate or a combination of predicates)")
    _check_size(node)
    return node


def first_line(exc: Exception) -> str:
    """The first line of an error's message, for a problem detail."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


def _parse_text(text: str) -> Any:
    _check_text_nesting(text)
    if re.search(r"\bT_OVERLAPS\b", text, re.IGNORECASE):
        raise bad("T_OVERLAPS is not supported (instants cannot overlap); use T_INTERSECTS")
    if re.search(r"\bT_DISJOINT\b", text, re.IGNORECASE):
        raise bad("T_DISJOINT is not supported in cql2-text here; write NOT (a T_INTERSECTS b)")
    try:
        return parse_text(_bare_dwithin(_doubled_quotes(text)))
    except Exception as exc:  # lark raises many error types; all mean "not valid cql2-text"
        raise bad(f"filter is not valid cql2-text: {first_line(exc)}") from exc


QUOTE = "\ue000"  # stands for a doubled quote ('') inside a literal while pygeofilter parses


def _doubled_quotes(text: str) -> str:
    """CQL2 writes a quote inside a text literal as ''; pygeofilter's grammar does not know
    that, so it is swapped for a private-use character and restored in the values."""
    if QUOTE in text:
        raise bad("filter contains the character U+E000")
    out: list[str] = []
    quoted = False
    k = 0
    while k < len(text):
        ch = text[k]
        if ch == "'" and quoted and text[k + 1 : k + 2] == "'":
            out.append(QUOTE)
            k += 2
            continue
        if ch == "'":
            quoted = not quoted
        out.append(ch)
        k += 1
    return "".join(out)


def unquote(value: str) -> str:
    """A text literal with its doubled quotes restored."""
    return value.replace(QUOTE, "'")


def _check_text_nesting(text: str) -> None:
    depth = deepest = 0
    quoted = False
    for ch in text:
        if ch == "'":
            quoted = not quoted
        elif not quoted and ch == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif not quoted and ch == ")":
            depth -= 1
    if deepest > MAX_DEPTH:
        raise bad(f"filter nests deeper than {MAX_DEPTH} levels")


def _bare_dwithin(text: str) -> str:
    """`DWITHIN(...)` used as a predicate on its own becomes `DWITHIN(...) = TRUE`, the form
    pygeofilter's grammar accepts for a boolean function."""
    out: list[str] = []
    pos = 0
    for m in re.finditer(r"\bDWITHIN\s*\(", text, re.IGNORECASE):
        if m.start() < pos or _inside_quotes(text, m.start()):
            continue
        end = _closing(text, m.end() - 1)
        if end is None:
            break
        rest = text[end + 1 :].lstrip()
        out.append(text[pos : end + 1])
        if not rest.startswith("="):
            out.append(" = TRUE")
        pos = end + 1
    out.append(text[pos:])
    return "".join(out)


def _inside_quotes(text: str, at: int) -> bool:
    return text.count("'", 0, at) % 2 == 1


def _closing(text: str, open_at: int) -> int | None:
    depth = 0
    quoted = False
    for k in range(open_at, len(text)):
        ch = text[k]
        if ch == "'":
            quoted = not quoted
        elif not quoted and ch == "(":
            depth += 1
        elif not quoted and ch == ")":
            depth -= 1
            if depth == 0:
                return k
    return None


def _parse_json(text: str) -> Any:
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise bad(f"filter is not valid JSON: {first_line(exc)}") from exc
    _check_json_depth(doc)
    doc = _normalise_json(doc)
    try:
        return parse_json(doc)
    except Exception as exc:  # pygeofilter raises ValueError/KeyError/TypeError/…
        raise bad(f"filter is not valid cql2-json: {first_line(exc)}") from exc


def _check_json_depth(doc: Any) -> None:
    stack: list[tuple[Any, int]] = [(doc, 1)]
    count = 0
    while stack:
        node, depth = stack.pop()
        count += 1
        if depth > MAX_DEPTH * 3:  # a predicate uses ~3 JSON levels (op, args, value)
            raise bad(f"filter nests deeper than {MAX_DEPTH} levels")
        if count > MAX_NODES * 20:
            raise bad("filter is too large")
        children = (
            node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        )
        stack.extend((c, depth + 1) for c in children)


def _normalise_json(node: Any) -> Any:
    """Bring CQL2 1.0 JSON to the shape pygeofilter 0.4 reads: 3-argument BETWEEN, `bbox`
    literals (pygeofilter mixes up their axis order), DWITHIN and ACCENTI as functions."""
    if isinstance(node, list):
        return [_normalise_json(n) for n in node]
    if not isinstance(node, dict):
        return node
    if set(node) == {"bbox"}:
        return {"type": "Polygon", "coordinates": bbox_ring(node["bbox"])}
    if "type" in node and "coordinates" in node:
        return node
    op = node.get("op")
    if isinstance(op, str):
        name = op.lower()
        args = node.get("args")
        if name == "t_overlaps":
            raise bad("t_overlaps is not supported (instants cannot overlap); use t_intersects")
        if name == "t_disjoint":  # missing from pygeofilter's tables: NOT T_INTERSECTS
            return {"op": "not", "args": [{"op": "t_intersects", "args": _normalise_json(args)}]}
        if name in ("dwithin", "s_dwithin"):
            return {"function": {"name": "dwithin", "arguments": _normalise_json(args)}}
        if name == "accenti":  # not in pygeofilter's tables: the function CQL2 text gives
            return {"function": {"name": "accenti", "arguments": _normalise_json(args)}}
        if name == "between" and isinstance(args, list) and len(args) == 3:
            args = [args[0], [args[1], args[2]]]
        # pygeofilter's operator names are lower case, except isNull
        op = "isNull" if name == "isnull" else name
        return {**node, "op": op, "args": _normalise_json(args)}
    return {k: _normalise_json(v) for k, v in node.items()}


def bbox_ring(box: Any) -> list[list[list[float]]]:
    """The closed ring of a bbox literal (4 or 6 numbers)."""
    if not isinstance(box, list) or len(box) not in (4, 6):
        raise bad("a bbox literal needs 4 (or 6) numbers")
    if len(box) == 6:
        box = [box[0], box[1], box[3], box[4]]
    x1, y1, x2, y2 = (number(v, "bbox") for v in box)
    return [[[x1, y1], [x2, y1], [x2, y2], [x1, y2], [x1, y1]]]


def _check_size(root: ast.Node) -> None:
    for count, (depth, node) in enumerate(_walk(root), start=1):
        if depth > MAX_DEPTH:
            raise bad(f"filter nests deeper than {MAX_DEPTH} levels")
        if count > MAX_NODES:
            raise bad(f"filter has more than {MAX_NODES} terms")
        if isinstance(node, ast.In) and len(node.sub_nodes) > MAX_LIST:
            raise bad(f"an IN list has more than {MAX_LIST} values")


def _walk(root: Any) -> Iterator[tuple[int, Any]]:
    stack: list[tuple[int, Any]] = [(1, root)]
    while stack:
        depth, node = stack.pop()
        yield depth, node
        if isinstance(node, ast.Node):
            subs = node.get_sub_nodes() or []
            stack.extend((depth + 1, s) for s in subs if isinstance(s, ast.Node | list))
        elif isinstance(node, list):
            stack.extend((depth + 1, s) for s in node if isinstance(s, ast.Node | list))


def number(value: Any, what: str) -> float:
    """`value` as a finite float (InvalidInput naming `what` otherwise)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise bad(f"{what} must be a finite number")
    return float(value)

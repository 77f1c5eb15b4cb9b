"""index.html preloads exactly the ES modules the dashboard's main.js imports (directly or
through other modules), so the browser fetches them at once instead of one import level after
another; a module added or dropped without the list fails here."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

STATIC = Path(__file__).resolve().parent.parent / "app" / "web" / "static"
IMPORT = re.compile(r"""^\s*import\s[^;]*?from\s+["']\./([\w./-]+)["']""", re.M | re.S)


class Preloads(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "link" and a.get("rel") == "modulepreload" and a.get("href"):
            self.hrefs.append(str(a["href"]))


def module_graph(entry: str) -> set[str]:
    """Every module reachable from `entry` through static relative imports."""
    seen: set[str] = set()
    todo = [entry]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo += IMPORT.findall((STATIC / "js" / name).read_text("utf-8"))
    return seen


def test_index_preloads_the_whole_module_graph() -> None:
    parser = Preloads()
    parser.feed((STATIC / "index.html").read_text("utf-8"))
    graph = module_graph("main.js")
    assert len(graph) > 20  # the parser found the imports
    assert sorted(parser.hrefs) == sorted(f"/static/js/{m}" for m in graph)
    assert len(parser.hrefs) == len(set(parser.hrefs))

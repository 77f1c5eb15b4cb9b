"""The interface's catalogues (`app/web/static/i18n/*.json`: key → {"vi": …, "en": …}) and the
text written in the pages' code. No browser and no database: the catalogues are read as JSON,
index.html with Python's HTML parser, the ES modules with acorn (tests/js/strings.mjs, run
with node).

1. Every message has a Vietnamese and an English text, neither empty, with the same
   `{placeholders}` (an English plural object `{"one": …, "other": …}`: each form).
2. Every key a page uses (`t("…")`, `has("…")`, `data-i18n`, `data-i18n-attr`) is in a
   catalogue it loads (common.json, and dashboard.json or field.json), and every key of its
   own catalogue is used:
   a key counts as used when the code names it as a string, or when it starts with the static
   prefix of a `t(`prefix.${…}`)` key (statuses, roles, layers…), which must end with a dot.
3. No text a person reads is written in the page code; it belongs in a catalogue.
   In the ES modules every string literal and template literal (each `${…}` read as `{}`) is
   checked, except: module paths, object property names, directives; the key argument of
   t()/has() (checked by 2); console.*() arguments (for developers, never on the page); CSS
   class lists (the values of `className`/`class` and `classList.*()` arguments). A literal is
   text when it has a letter and
     - a letter outside ASCII (Vietnamese is written with its diacritics), or
     - two words separated by white space ("Sign in", "not allowed"), or
     - a capitalised word (a capital and two lower-case letters: "Loading", "Close"), or
     - it is the value of what a person reads: the properties/attributes text, textContent,
       innerText, title, placeholder, alt, aria-label, label (there any letter counts).
   What passes is code: ids, classes, event names, API fields and codes, CSS, URLs and paths —
   single tokens in lower case, kebab-, snake- or camelCase. A few names pass by name only
   (`ALLOWED` in strings.mjs): HTTP header names, GeoJSON type names, error names, keyboard
   key names, the IANA time zone, the export formats (GeoJSON, CSV, GeoPackage) and the
   product's name.
   In HTML, a text node with a letter must sit inside an element with `data-i18n` (whose text
   the page replaces), unless it is one of those names or a number with its unit ("5 km");
   the attributes title, aria-label, placeholder and alt carry no letter (they come from
   `data-i18n-attr`). Script and style contents are not text.
   The same rules hold for the field page (field.html, js/field/*.js with its service worker;
   catalogues common.json and field.json).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from conftest import needs

ROOT = Path(__file__).resolve().parent.parent
STATIC = ROOT / "app" / "web" / "static"
CATALOGUES = STATIC / "i18n"
STRINGS = ROOT / "tests" / "js" / "strings.mjs"
NODE = shutil.which("node")
ACORN = ROOT / "node_modules" / "acorn"

# the dashboard's page and modules (not i18n.js: the language module itself)
DASHBOARD = [
    STATIC / "index.html",
    *sorted(p for p in (STATIC / "js").glob("*.js") if p.name != "i18n.js"),
]
DASHBOARD_CATALOGUES = ("common", "dashboard")
# the field page (/field): its page and modules, the service worker included
FIELD = [STATIC / "field.html", *sorted((STATIC / "js" / "field").glob("*.js"))]
FIELD_CATALOGUES = ("common", "field")
PAGES = {"dashboard": (DASHBOARD, DASHBOARD_CATALOGUES), "field": (FIELD, FIELD_CATALOGUES)}

PLACEHOLDER = re.compile(r"\{(\w+)\}")
LETTER = re.compile(r"[^\W\d_]")
# the same names strings.mjs allows, and numbers with a unit
HTML_ALLOWED = {"GeoJSON", "CSV", "GeoPackage", "Borderwatch"}
NUMBER_WITH_UNIT = re.compile(r"^\d+([.,]\d+)?\s?(km|m)?$")
READ_ATTRIBUTES = ("title", "aria-label", "placeholder", "alt")

needs_node = needs(
    NODE is not None and ACORN.exists(), "node or node_modules/acorn missing (make setup)"
)


def load(name: str) -> dict[str, dict[str, Any]]:
    data: dict[str, dict[str, Any]] = json.loads((CATALOGUES / f"{name}.json").read_text("utf-8"))
    return data


def forms(value: Any) -> list[str]:
    """The texts of one side of a message: the string, or each plural form."""
    if isinstance(value, dict):
        return [str(v) for v in value.values()]
    return [value] if isinstance(value, str) else []


@dataclass
class Finding:
    file: str
    line: int
    text: str
    why: str


@dataclass
class Scanned:
    keys: list[tuple[str, str]]  # (file, key) named by the code
    prefixes: list[tuple[str, str]]  # (file, static prefix of a t(`…${}`) key)
    strings: set[str]  # every string literal of the JS
    findings: list[Finding]


class _Html(HTMLParser):
    """Text nodes and read attributes of a page, and its data-i18n keys."""

    def __init__(self, file: str) -> None:
        super().__init__(convert_charrefs=True)
        self.file = file
        self.stack: list[tuple[str, bool]] = []  # (tag, has data-i18n)
        self.keys: list[tuple[str, str]] = []
        self.findings: list[Finding] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        line = self.getpos()[0]
        if "data-i18n" in a:
            self.keys.append((self.file, a["data-i18n"]))
        for pair in a.get("data-i18n-attr", "").split(";"):
            if "=" in pair:
                self.keys.append((self.file, pair.split("=", 1)[1].strip()))
        for name in READ_ATTRIBUTES:
            if LETTER.search(a.get(name, "")):
                self.findings.append(Finding(self.file, line, a[name], f"{name}= with text"))
        void = tag in ("meta", "link", "input", "br", "img", "hr", "source")
        if not void:
            self.stack.append((tag, "data-i18n" in a))

    def handle_endtag(self, tag: str) -> None:
        while self.stack:
            if self.stack.pop()[0] == tag:
                break

    def handle_data(self, data: str) -> None:
        text = data.strip()
        if not LETTER.search(text) or text in HTML_ALLOWED or NUMBER_WITH_UNIT.match(text):
            return
        if any(tag in ("script", "style") for tag, _ in self.stack):
            return
        if any(translated for _, translated in self.stack):
            return
        self.findings.append(Finding(self.file, self.getpos()[0], text, "text outside data-i18n"))


def scan(files: list[Path]) -> Scanned:
    """Keys, prefixes, literals and findings (the rule above) of HTML pages and ES modules."""
    out = Scanned([], [], set(), [])
    for page in (f for f in files if f.suffix == ".html"):
        parser = _Html(page.name)
        parser.feed(page.read_text("utf-8"))
        out.keys += parser.keys
        out.findings += parser.findings
    modules = [str(f) for f in files if f.suffix in (".js", ".mjs")]
    if modules:
        assert NODE is not None
        done = subprocess.run(
            [NODE, str(STRINGS), *modules], capture_output=True, text=True, timeout=60, check=True
        )
        for entry in json.loads(done.stdout):
            name = Path(entry["file"]).name
            out.keys += [(name, k["key"]) for k in entry["keys"]]
            out.prefixes += [(name, k["prefix"]) for k in entry["prefixes"]]
            out.strings |= set(entry["strings"])
            out.findings += [
                Finding(name, f["line"], f["text"], f["why"]) for f in entry["findings"]
            ]
    return out


@pytest.mark.parametrize("name", ["common", "dashboard", "field"])
def test_every_message_has_both_languages_with_the_same_placeholders(name: str) -> None:
    bad = []
    for key, entry in load(name).items():
        vi, en = forms(entry.get("vi")), forms(entry.get("en"))
        if not vi or not en or not all(s.strip() for s in vi + en):
            bad.append(f"{key}: empty or missing side")
            continue
        want = set(PLACEHOLDER.findall(vi[0]))
        for text in vi + en:
            if set(PLACEHOLDER.findall(text)) != want:
                bad.append(f"{key}: placeholders {sorted(want)} vs {text!r}")
        if isinstance(entry["vi"], dict) or (
            isinstance(entry["en"], dict) and "other" not in entry["en"]
        ):
            bad.append(f"{key}: plural forms are English only, and need 'other'")
    assert bad == []


@needs_node
@pytest.mark.parametrize("page", sorted(PAGES))
def test_every_key_used_exists_and_every_page_key_is_used(page: str) -> None:
    files, names = PAGES[page]
    catalogue: dict[str, Any] = {}
    for name in names:
        catalogue |= load(name)
    found = scan(files)
    missing = sorted({f"{file}: {key}" for file, key in found.keys if key not in catalogue})
    assert missing == []
    prefixes = {prefix for _, prefix in found.prefixes}
    assert all(p.endswith(".") and len(p) > 1 for p in prefixes), prefixes
    for prefix in prefixes:
        assert any(k.startswith(prefix) for k in catalogue), f"no message starts with {prefix}"
    used = {key for _, key in found.keys} | found.strings
    dead = [
        key
        for key in load(page)
        if key not in used and not any(key.startswith(p) for p in prefixes)
    ]
    assert dead == []


@needs_node
@pytest.mark.parametrize("page", sorted(PAGES))
def test_no_text_is_written_in_the_pages_code(page: str) -> None:
    findings = scan(PAGES[page][0]).findings
    assert findings == [], "\n".join(f"{f.file}:{f.line}: {f.text!r} ({f.why})" for f in findings)


@needs_node
def test_the_scanner_catches_text_and_passes_code(tmp_path: Path) -> None:
    """The rule itself, on a module and a page written for it."""
    module = tmp_path / "sample.js"
    module.write_text(
        'import { t } from "./i18n.js";\n'
        'el("div", { className: "badge zero", text: t("stats.title") });\n'
        'el("div", { text: "sev" });\n'  # 3: a letter in a text property
        'showMessage("Loading the map");\n'  # 4: words
        'const a = "Đóng";\n'  # 5: Vietnamese
        'const b = "Close";\n'  # 6: a capitalised word
        'node.setAttribute("aria-label", `Play ${n}`);\n'  # 7
        'map.on("mouseenter", "post-circles", () => {});\n'
        'const h = { "Content-Type": "application/json", type: "FeatureCollection" };\n'
        'console.error("i18n: no message");\n'
        "t(`status.${code}`);\n",
        "utf-8",
    )
    page = tmp_path / "sample.html"
    page.write_text(
        '<p data-i18n="x">Loading</p><p>Sign in</p><button title="Play">5 km</button>'
        "<script>var s = 'Not text';</script>",
        "utf-8",
    )
    found = scan([module, page])
    assert sorted((f.file, f.line) for f in found.findings) == [
        ("sample.html", 1),
        ("sample.html", 1),
        ("sample.js", 3),
        ("sample.js", 4),
        ("sample.js", 5),
        ("sample.js", 6),
        ("sample.js", 7),
    ]
    assert ("sample.js", "stats.title") in found.keys
    assert ("sample.js", "status.") in found.prefixes

"""SQL files that migrations load (migrations/sql/): read one and split it into statements.

A file holds the definition of database functions as one revision installed them; a later
change is a new file, so a migration always loads exactly what it loaded when it was written.
asyncpg runs one statement per call, hence the split: on `;` outside quotes, dollar-quoted
bodies and comments.
"""

from __future__ import annotations

import re
from pathlib import Path

from app.config import PROJECT_ROOT

SQL_DIR = PROJECT_ROOT / "migrations" / "sql"

# what can hide a ';': a dollar-quoted body, a string, a quoted name, a comment
_SKIP = re.compile(
    r"""(?P<dollar>\$(?P<tag>[A-Za-z_][A-Za-z_0-9]*)?\$)
      | '(?:[^']|'')*'
      | "(?:[^"]|"")*"
      | --[^\n]*
      | /\*.*?\*/
      | (?P<end>;)""",
    re.VERBOSE | re.DOTALL,
)


def split(script: str) -> list[str]:
    """The statements of `script`, without their final ';' (comment-only parts dropped)."""
    statements: list[str] = []
    start = pos = 0
    while (m := _SKIP.search(script, pos)) is not None:
        if m.group("end"):
            statements.append(script[start : m.start()])
            start = pos = m.end()
        elif m.group("dollar"):
            close = script.find(m.group("dollar"), m.end())
            if close < 0:
                raise ValueError(f"unterminated {m.group('dollar')} quote")
            pos = close + len(m.group("dollar"))
        else:
            pos = m.end()
    statements.append(script[start:])
    return [s.strip() for s in statements if _has_code(s)]


def _has_code(part: str) -> bool:
    without = re.sub(r"--[^\n]*|/\*.*?\*/", "", part, flags=re.DOTALL)
    return bool(without.strip())


def statements(name: str, directory: Path = SQL_DIR) -> list[str]:
    """The statements of migrations/sql/`name`."""
    return split((directory / name).read_text(encoding="utf-8"))

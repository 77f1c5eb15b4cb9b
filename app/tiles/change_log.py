"""The incident change log (migration 0022): which incidents, and where, each committed version
of the `incidents` counter changed, so that an answer kept for version A can be proven still
valid at version B (docs/decisions.md, "A change log beside the layer version").

`incident_change` holds one row per changed incident and position (a create its new position,
a delete its old one, an update both) stamped with the writing transaction's id; a statement
changing more than LOG_ROWS_MAX incidents leaves one row without id holding the box of all its
positions, TRUNCATE one row without id or box (everything). `incident_change_commit` ties each
version to the transaction that committed it (recorded by the deferred bump, at COMMIT).

What a reader may rely on: in any snapshot that sees incidents version B, the commit rows of
every version <= B and their change rows are visible (they commit with the counter, and the
counter's row lock serialises the bumps in commit order). A range (A, B] is *covered* when the
log still holds each of its B - A commits (the oldest are pruned): otherwise nothing is proven.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    PrimaryKeyConstraint,
    Table,
    Uuid,
    text,
)

from app.db import Base

# a statement changing more incidents leaves one box instead of its rows (migration 0026; a
# transaction may set a smaller limit in this setting: tests)
LOG_ROWS_MAX = 20_000
LOG_ROWS_SETTING = "borderwatch.change_log_rows_max"

incident_change_commit = Table(
    "incident_change_commit",
    Base.metadata,
    Column("version", BigInteger, nullable=False),
    Column("xid", BigInteger, nullable=False),
    Column("row_count", Integer, nullable=False, server_default=text("0")),
    Column(
        "committed_at",
        DateTime(timezone=True),
        nullable=False,
        server_default=text("clock_timestamp()"),
    ),
    PrimaryKeyConstraint("version", name="pk_incident_change_commit"),
)

incident_change = Table(
    "incident_change",
    Base.metadata,
    Column("xid", BigInteger, nullable=False),
    Column("incident_id", Uuid, nullable=True),
    Column("west", Float, nullable=True),
    Column("south", Float, nullable=True),
    Column("east", Float, nullable=True),
    Column("north", Float, nullable=True),
    Index("ix_incident_change_xid", "xid"),
)

# Parameters: :a and :at (the kept answer's incidents version and the instant it moved, as
# versions.STAMP writes it), and the box :w :s :e :n; `b` is the incidents counter's row of
# layer_version (B). The parts are used alone by the aggregate tiles' recount
# (app/tiles/incidents.py).
# the commits k of (A, B]
IN_RANGE_SQL = "k.version > :a AND k.version <= b.version"
# whether (A, B] is covered and A is the commit the answer was made from (a counter moved by a
# transaction that rolled back reaches the same number at another instant)
COVERED_SQL = f"""(SELECT count(*) FROM incident_change_commit k
         WHERE {IN_RANGE_SQL}) = b.version - :a
       AND EXISTS (SELECT FROM incident_change_commit k
                    WHERE k.version = :a AND k.committed_at::text = :at)"""
# a change row c that lies in the box (a row without box: everywhere)
IN_BOX_SQL = """(c.west IS NULL
                       OR (c.west <= :e AND c.east >= :w AND c.south <= :n AND c.north >= :s))"""
# In the statement's own snapshot: the counter now (B), whether (A, B] is covered, and whether
# any change of (A, B] lies in the box. The change rows are looked up per commit (an EXISTS
# inside an EXISTS): as one join under EXISTS, the planner expected an early match and read
# the log from its start (54 ms against 0.07 ms with a 200 000-row log: docs/performance.md).
TOUCHED_SQL = f"""
SELECT b.version AS newest,
       {COVERED_SQL} AS covered,
       EXISTS (SELECT FROM incident_change_commit k
                WHERE {IN_RANGE_SQL}
                  AND EXISTS (SELECT FROM incident_change c
                               WHERE c.xid = k.xid AND {IN_BOX_SQL}))
         AS touched
  FROM layer_version b WHERE b.layer = 'incidents'
"""

# Parameters: :a and :limit. The incidents changed in (A, B] (at most :limit + 1 of them), and
# whether a change without id (a large statement, a TRUNCATE) is among them.
CHANGED_SQL = """
SELECT DISTINCT c.incident_id
  FROM incident_change_commit k JOIN incident_change c ON c.xid = k.xid
 WHERE k.version > :a
   AND k.version <= (SELECT version FROM layer_version WHERE layer = 'incidents')
"""


def touched_params(a: int, at: str, box: tuple[float, float, float, float]) -> dict[str, Any]:
    """TOUCHED_SQL's parameters for version `a` moved at `at` and the box (west, south, east,
    north)."""
    w, s, e, n = box
    return {"a": a, "at": at, "w": w, "s": s, "e": e, "n": n}

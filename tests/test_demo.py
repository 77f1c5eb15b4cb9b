"""Demo incidents: inside Vietnam (or on its rivers), labelled, seasonal, border-specific,
reproducible, and never loaded twice."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.incidents import demo

NOW = datetime(2026, 11, 1, tzinfo=UTC)


async def test_demo_load(session: AsyncSession) -> None:
    before = await demo.count_incidents(session=session)
    assert await demo.load(session=session, count=300, seed=11) == 300
    assert await demo.count_incidents(session=session) == before + 300
    rows = (
        await session.execute(
            text(
                """
                SELECT count(*) FILTER (WHERE country_code = 'VNM'),
                       count(*) FILTER (WHERE jurisdiction_method = 'contains'),
                       count(*) FILTER (WHERE border_distance_km IS NOT NULL
                                          AND nearest_post_km IS NOT NULL),
                       count(DISTINCT category), count(DISTINCT province_code),
                       min(severity), max(severity)
                  FROM incident WHERE source = 'demo' AND source_id LIKE 'demo-11-%'
                """
            )
        )
    ).one()
    in_vietnam, contained, derived, categories, provinces, lo, hi = rows
    assert in_vietnam == 300  # river points in channels take the nearest province
    assert contained >= 290
    assert derived == 300
    assert categories >= 9 and provinces >= 20
    assert (lo, hi) == (1, 5)
    history = await session.execute(
        text(
            "SELECT count(*) FROM incident_history h JOIN incident i ON i.id = h.incident_id"
            " WHERE i.source_id LIKE 'demo-11-%' AND h.action = 'import' AND h.actor = 'demo'"
        )
    )
    assert history.scalar_one() == 300
    # the same seed again adds nothing; both loads are in the audit log
    assert await demo.load(session=session, count=300, seed=11, actor="cli:tester") == 0
    audit = await session.execute(
        text(
            "SELECT actor, after->>'seed', after->>'written' FROM audit_event"
            " WHERE action = 'demo_load' AND after->>'seed' = '11' ORDER BY id"
        )
    )
    assert [tuple(r) for r in audit] == [("system", "11", "300"), ("cli:tester", "11", "0")]
    # the places they are near are named as Vietnamese users write them, with diacritics:
    # each unit is one of the demo's place names, and every one of those has a mark
    named = await session.execute(
        text("SELECT DISTINCT unit FROM incident WHERE source_id LIKE 'demo-11-%'")
    )
    units = [str(u) for (u,) in named]
    assert len(units) > 5
    marked = set("ăâđêôơưáàảãạấầẩẫậắằẳẵặéèẻẽẹếềểễệíìỉĩịóòỏõọốồổỗộớờởỡợúùủũụứừửữựýỳỷỹỵ")
    for unit in units:
        assert unit.startswith("Demo unit ") and marked & set(unit.lower()), unit


async def test_generation_shape(session: AsyncSession) -> None:
    vietnam, neighbours, posts, borders = await demo._inputs(session)

    def make(seed: int) -> list[dict[str, Any]]:
        return demo.generate(
            count=20_000, seed=seed, vietnam=vietnam, neighbours=neighbours, posts=posts,
            borders=borders, now=NOW,
        )  # fmt: skip

    rows = make(5)
    assert rows == make(5)  # deterministic for a seed
    assert rows != make(6)
    assert len(rows) == 20_000 and len({r["source_id"] for r in rows}) == 20_000
    ages = [(NOW - r["occurred_at"]).days for r in rows]
    assert min(ages) >= 0 and 1000 < max(ages) <= 3 * 365
    cats = Counter(r["category"] for r in rows)
    assert set(cats) == {
        "drug_trafficking", "human_trafficking", "smuggling", "counterfeit_goods",
        "illegal_border_crossing", "robbery_theft", "fraud", "gambling", "environmental_crime",
        "weapons", "other",
    }  # fmt: skip
    # seasonal rhythm: smuggling peaks around Tet, sand mining in the dry season
    smuggling = Counter(r["occurred_at"].month for r in rows if r["category"] == "smuggling")
    assert smuggling[1] + smuggling[12] > 1.6 * (smuggling[6] + smuggling[7])
    sand = Counter(r["occurred_at"].month for r in rows if r["category"] == "environmental_crime")
    assert sand[2] + sand[3] > 2 * (sand[8] + sand[9])
    # border-specific mixes: drugs dominate near Lao gates, smuggling near Chinese gates
    lao = Counter(r["category"] for r in rows if r["lon"] < 104.5 and 20.5 < r["lat"] < 21.5)
    chn = Counter(r["category"] for r in rows if r["lon"] > 106.5 and r["lat"] > 21.4)
    assert lao.most_common(1)[0][0] == "drug_trafficking"
    assert chn.most_common(1)[0][0] in ("smuggling", "counterfeit_goods")
    # statuses: older incidents are more often solved
    old = Counter(r["status"] for r in rows if (NOW - r["occurred_at"]).days > 180)
    new = Counter(r["status"] for r in rows if (NOW - r["occurred_at"]).days < 30)
    assert old["solved"] / sum(old.values()) > 0.4 > new["solved"] / sum(new.values())

"""Demo incidents: inside Vietnam, labelled, reproducible and never loaded twice."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.incidents import demo


async def test_demo_load(session: AsyncSession) -> None:
    before = await demo.count_incidents(session=session)
    assert await demo.load(session=session, count=300, seed=11) == 300
    assert await demo.count_incidents(session=session) == before + 300
    rows = (
        await session.execute(
            text(
                """
                SELECT count(*) FILTER (WHERE country_code = 'VNM'
                                          AND jurisdiction_method = 'contains'),
                       count(*) FILTER (WHERE border_distance_km IS NOT NULL
                                          AND nearest_post_km IS NOT NULL),
                       count(DISTINCT category), count(DISTINCT province_code),
                       min(severity), max(severity)
                  FROM incident WHERE source = 'demo' AND source_id LIKE 'demo-11-%'
                """
            )
        )
    ).one()
    inside, derived, categories, provinces, lo, hi = rows
    assert inside == 300 and derived == 300
    assert categories >= 8 and provinces >= 15
    assert (lo, hi) == (1, 5)
    # the same seed again adds nothing
    assert await demo.load(session=session, count=300, seed=11) == 0

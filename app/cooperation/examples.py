"""Three example cooperation areas from the news reports the product grew from (../shared/seeds),
loaded with the demo data and marked `example`: they show how areas work, they are not records
of the agreements. Members are looked up in the loaded boundaries; an example whose units are
missing (a deployment with other boundary data) is skipped."""

from __future__ import annotations

import json
from datetime import date

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.cooperation import service
from app.cooperation.models import CooperationArea
from app.cooperation.service import AreaIn, MemberIn

ACTOR = "demo"
# seed 000: HCM City and six southern provinces (the units of the time: the 63 provinces)
SEED_000 = ("VN-SG", "VN-43", "VN-39", "VN-57", "VN-37", "VN-41", "VN-46")
# seed 004: An Giang (2025) communes whose (approximate) areas come within this distance of the
# land border with Cambodia, and the border units the report names that the approximate areas
# keep off the line (Tô Châu) or that lie on the sea border (the Tiên Hải islands)
BORDER_TOUCH_M = 500
SEED_004_NAMED = ("Phường Tô Châu", "Xã Tiên Hải")
# seed 003: Tràng Duệ industrial park (401 ha, An Dương, Hải Phòng): a rectangle of about that
# area around an approximate position, to be redrawn by the agency (approximate = true)
TRANG_DUE = (106.585, 20.835)
TRANG_DUE_HALF_DEG = (0.01057, 0.00813)  # ~2.2 × 1.8 km


async def _existing(session: AsyncSession, codes: tuple[str, ...]) -> list[str]:
    found = set(
        (
            await session.execute(
                text("SELECT code FROM jurisdiction WHERE code = ANY(:codes)"),
                {"codes": list(codes)},
            )
        ).scalars()
    )
    return [c for c in codes if c in found]


async def _an_giang_border(session: AsyncSession) -> list[str]:
    rows = await session.execute(
        text(
            """
            WITH p AS (SELECT code FROM jurisdiction
                        WHERE level = 'province' AND official_code = '91' AND valid_to IS NULL),
                 b AS (SELECT ST_Union(q.geom)::geography AS g
                         FROM border_segment_piece q JOIN border_segment s ON s.id = q.segment_id
                        WHERE s.code = 'VNM-KHM')
            SELECT j.code
              FROM jurisdiction j, p, b
             WHERE j.level = 'commune' AND j.parent_code = p.code
               AND (ST_DWithin(j.geom::geography, b.g, :touch) OR j.name_local = ANY(:named))
             ORDER BY j.code
            """
        ),
        {"touch": BORDER_TOUCH_M, "named": list(SEED_004_NAMED)},
    )
    return list(rows.scalars())


def _trang_due() -> dict[str, object]:
    (x, y), (dx, dy) = TRANG_DUE, TRANG_DUE_HALF_DEG
    ring = [
        [x - dx, y - dy],
        [x + dx, y - dy],
        [x + dx, y + dy],
        [x - dx, y + dy],
        [x - dx, y - dy],
    ]
    return {"type": "Polygon", "coordinates": [ring]}


async def _communes_under(session: AsyncSession, geometry: dict[str, object]) -> list[str]:
    rows = await session.execute(
        text(
            "SELECT code FROM jurisdiction WHERE level = 'commune' AND valid_to IS NULL"
            " AND ST_Intersects(geom, ST_SetSRID(ST_GeomFromGeoJSON(:g), 4326)) ORDER BY code"
        ),
        {"g": json.dumps(geometry)},
    )
    return list(rows.scalars())


async def examples(session: AsyncSession) -> list[tuple[AreaIn, str]]:
    """The example areas whose units are loaded, with where each comes from."""
    out: list[tuple[AreaIn, str]] = []
    hcmc = await _existing(session, SEED_000)
    if len(hcmc) == len(SEED_000):
        out.append(
            (
                AreaIn(
                    name="Phối hợp phòng, chống tội phạm vùng giáp ranh TP. Hồ Chí Minh và 6 tỉnh",
                    name_en="Crime prevention in the adjacent areas of HCM City and six provinces",
                    purpose="Tuần tra, kiểm soát, đấu tranh với tội phạm ở vùng giáp ranh;"
                    " ma túy qua biên giới Việt Nam – Campuchia",
                    lead_unit="Công an TP. Hồ Chí Minh",
                    valid_from=date(2018, 1, 1),
                    members=[MemberIn(kind="jurisdiction", code=c) for c in hcmc],
                ),
                "example: seed 000 (VNS); the seven localities as they were then",
            )
        )
    border = await _an_giang_border(session)
    if border:
        out.append(
            (
                AreaIn(
                    name="Kế hoạch 172/KH-CAT-PV01: an ninh trật tự xã, phường, đặc khu biên giới",
                    name_en="Plan 172: security in An Giang's border communes, wards and special"
                    " zones",
                    purpose="Phối hợp bảo đảm an ninh trật tự trên tuyến biên giới Việt Nam –"
                    " Campuchia",
                    lead_unit="Công an tỉnh An Giang",
                    valid_from=date(2025, 10, 15),
                    members=[MemberIn(kind="jurisdiction", code=c) for c in border]
                    + [MemberIn(kind="border_segment", code="VNM-KHM", border_km=10.0)],
                ),
                "example: seed 004; communes whose approximate areas touch the Cambodian"
                " border, with Tô Châu and Tiên Hải named by the report",
            )
        )
    park = _trang_due()
    under = await _communes_under(session, park)
    if under:
        out.append(
            (
                AreaIn(
                    name="Mô hình liên kết bảo vệ an ninh trật tự KCN Tràng Duệ",
                    name_en="Security cooperation of the Tràng Duệ industrial park and its"
                    " communes",
                    purpose="Bảo đảm an ninh trật tự khu công nghiệp và các xã, phường xung quanh",
                    lead_unit="Công an TP. Hải Phòng",
                    valid_from=date(2017, 1, 30),
                    members=[
                        MemberIn(
                            kind="polygon",
                            name="Khu công nghiệp Tràng Duệ (vị trí gần đúng)",
                            approximate=True,
                            geometry=park,
                        )
                    ]
                    + [MemberIn(kind="jurisdiction", code=c) for c in under],
                ),
                "example: seed 003; the park's polygon is approximate (position and outline)",
            )
        )
    return out


async def count(session: AsyncSession) -> int:
    """How many cooperation areas exist (examples or not)."""
    return int((await session.execute(text("SELECT count(*) FROM cooperation_area"))).scalar_one())


async def load(session: AsyncSession) -> int:
    """Create the example areas not created yet (by name); how many were created."""
    have = set(
        (
            await session.execute(
                select(CooperationArea.name).where(CooperationArea.example.is_(True))
            )
        ).scalars()
    )
    created = 0
    for body, source in await examples(session):
        if body.name not in have:
            await service.create(session, body=body, actor=ACTOR, example=True, source=source)
            created += 1
    return created

"""A demo set of units along the Vietnam–Laos border: the four levels of the hotline network of
seed 002 for four provinces (Thanh Hóa, Nghệ An, Hà Tĩnh, Quảng Trị).

Every unit is marked `source = 'demo'`; every contact is a FICTITIOUS number (+84 000 …: no
Vietnamese number starts with 000) with a note saying so. The names are the real kinds of units
(Công an tỉnh, Bộ Chỉ huy Bộ đội Biên phòng tỉnh, Đồn Biên phòng cửa khẩu, Công an xã), but the
records are examples, not a directory. Loading is idempotent: units are matched by code, and a
demo unit already there keeps its contacts."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.units.models import Unit, UnitContact

SOURCE = "demo"
DEMO_NOTE = "DEMO — số giả, không phải số thật / fictitious demo number"


@dataclass(frozen=True)
class DemoPost:
    """A gate with its border-guard station, customs branch and the Lao post across."""

    post: str  # border_post code (geodata/border_posts.csv)
    station: str  # the border-guard station's name
    station_en: str
    lao: str  # the Lao post across the border (its police)
    lao_en: str


@dataclass(frozen=True)
class DemoProvince:
    """A province of the 2025 map with its police and border-guard command and its gates."""

    code: str  # 2025 province code
    name: str
    name_en: str
    number: int  # for the fictitious numbers
    posts: tuple[DemoPost, ...]


PROVINCES: tuple[DemoProvince, ...] = (
    DemoProvince(
        "VN-P38", "Thanh Hóa", "Thanh Hoa", 38,
        (DemoPost("na-meo", "Đồn Biên phòng cửa khẩu quốc tế Na Mèo",
                  "Na Meo international border gate border-guard station",
                  "Đồn công an cửa khẩu Nậm Xôi (Hủa Phăn, Lào)",
                  "Nam Soi border police post (Houaphanh, Lao PDR)"),),
    ),
    DemoProvince(
        "VN-P40", "Nghệ An", "Nghe An", 40,
        (DemoPost("nam-can", "Đồn Biên phòng cửa khẩu quốc tế Nậm Cắn",
                  "Nam Can international border gate border-guard station",
                  "Đồn công an cửa khẩu Nặm Kan (Xiêng Khoảng, Lào)",
                  "Nam Kan border police post (Xiengkhouang, Lao PDR)"),
         DemoPost("thanh-thuy-nghe-an", "Đồn Biên phòng cửa khẩu quốc tế Thanh Thủy",
                  "Thanh Thuy international border gate border-guard station",
                  "Đồn công an cửa khẩu Nậm On (Bôlykhămxay, Lào)",
                  "Nam On border police post (Bolikhamxay, Lao PDR)")),
    ),
    DemoProvince(
        "VN-P42", "Hà Tĩnh", "Ha Tinh", 42,
        (DemoPost("cau-treo", "Đồn Biên phòng cửa khẩu quốc tế Cầu Treo",
                  "Cau Treo international border gate border-guard station",
                  "Đồn công an cửa khẩu Nậm Phao (Bôlykhămxay, Lào)",
                  "Nam Phao border police post (Bolikhamxay, Lao PDR)"),),
    ),
    DemoProvince(
        "VN-P44", "Quảng Trị", "Quang Tri", 44,
        (DemoPost("lao-bao", "Đồn Biên phòng cửa khẩu quốc tế Lao Bảo",
                  "Lao Bao international border gate border-guard station",
                  "Đồn công an cửa khẩu Đen Sạ Vẳn (Savannakhet, Lào)",
                  "Dansavanh border police post (Savannakhet, Lao PDR)"),),
    ),
)  # fmt: skip

# the commune of today's map nearest a post (holding it when the point lies inside Vietnam)
COMMUNE_OF_POST_SQL = text(
    """
    SELECT j.code, j.name_local, j.name
      FROM border_post p
      JOIN LATERAL (
          SELECT code, name_local, name FROM jurisdiction
           WHERE level = 'commune' AND (valid_to IS NULL OR valid_to > current_date)
           ORDER BY geom <-> p.geom LIMIT 1
      ) j ON true
     WHERE p.code = :post
    """
)


def _number(province: int, unit: int) -> str:
    """A fictitious number: +84 000 …, a prefix no Vietnamese number has."""
    return f"+84 000 {province:03d} {unit:03d}"


class _Loader:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.written = 0

    async def unit(
        self,
        code: str,
        name: str,
        name_en: str,
        *,
        agency: str,
        level: str,
        parent: Unit | None = None,
        jurisdiction: str | None = None,
        post: str | None = None,
        country: str = "VNM",
        contacts: tuple[tuple[str, str], ...] = (),
    ) -> Unit | None:
        """The unit `code` (made when missing, with its contacts); None when its post is not
        loaded (no boundary data yet)."""
        found = (await self.session.execute(select(Unit).where(Unit.code == code))).scalar()
        if found is not None:
            return found
        post_id = None
        if post is not None:
            post_id = (
                await self.session.execute(
                    text("SELECT id FROM border_post WHERE code = :c"), {"c": post}
                )
            ).scalar()
            if post_id is None:
                return None
        unit = Unit(
            code=code, name=name, name_en=name_en, agency=agency, level=level, country=country,
            parent_id=parent.id if parent else None, jurisdiction_code=jurisdiction,
            post_id=post_id, source=SOURCE, created_by="demo", updated_by="demo",
        )  # fmt: skip
        self.session.add(unit)
        await self.session.flush()
        for channel, value in contacts:
            self.session.add(
                UnitContact(unit_id=unit.id, channel=channel, value=value, note=DEMO_NOTE)
            )
        self.written += 1
        return unit


async def load(*, session: AsyncSession) -> int:
    """Add the demo units that are missing; returns how many were added. Needs the border
    posts (geodata) for the post and commune units."""
    ld = _Loader(session)
    ministry = await ld.unit(
        "VN-BCA-C04",
        "Cục Cảnh sát điều tra tội phạm về ma túy (C04), Bộ Công an",
        "Drug Crime Investigation Police Department (C04), Ministry of Public Security",
        agency="police", level="central",
        contacts=(("hotline", _number(0, 1)), ("email", "c04.demo@example.invalid")),
    )  # fmt: skip
    command = await ld.unit(
        "VN-BTL-BDBP",
        "Bộ Tư lệnh Bộ đội Biên phòng",
        "Border Guard Command",
        agency="border_guard", level="central",
        contacts=(("hotline", _number(0, 2)), ("radio", "Kênh 1 (DEMO)")),
    )  # fmt: skip
    for p in PROVINCES:
        police = await ld.unit(
            f"{p.code}-CA",
            f"Công an tỉnh {p.name}",
            f"{p.name_en} Provincial Police",
            agency="police", level="province", parent=ministry, jurisdiction=p.code,
            contacts=(("hotline", _number(p.number, 113)), ("phone", _number(p.number, 100))),
        )  # fmt: skip
        guards = await ld.unit(
            f"{p.code}-BP",
            f"Bộ Chỉ huy Bộ đội Biên phòng tỉnh {p.name}",
            f"{p.name_en} Provincial Border Guard Command",
            agency="border_guard", level="province", parent=command, jurisdiction=p.code,
            contacts=(("hotline", _number(p.number, 200)), ("radio", "Kênh 5 (DEMO)")),
        )  # fmt: skip
        for i, d in enumerate(p.posts, start=1):
            await ld.unit(
                f"{p.code}-BP-{d.post}",
                d.station,
                d.station_en,
                agency="border_guard", level="post", parent=guards, post=d.post,
                contacts=(("hotline", _number(p.number, 200 + i)), ("radio", "Kênh 7 (DEMO)")),
            )  # fmt: skip
            await ld.unit(
                f"{p.code}-HQ-{d.post}",
                f"Chi cục Hải quan cửa khẩu {d.station.rsplit('quốc tế ', 1)[-1]}",
                f"Customs branch, {d.station_en.split(' international')[0]} gate",
                agency="customs", level="post", post=d.post,
                contacts=(("phone", _number(p.number, 300 + i)),),
            )  # fmt: skip
            await ld.unit(
                f"LAO-CA-{d.post}",
                d.lao,
                d.lao_en,
                agency="police", level="post", country="LAO", post=d.post,
                contacts=(("hotline", f"+856 00 {p.number:03d} {i:03d}"),),
            )  # fmt: skip
            commune = (await session.execute(COMMUNE_OF_POST_SQL, {"post": d.post})).one_or_none()
            if commune is not None:
                local = str(commune.name_local or commune.name)
                await ld.unit(
                    f"{commune.code}-CA",
                    f"Công an {local[:1].lower()}{local[1:]}",
                    f"{commune.name} commune police",
                    agency="police", level="commune", parent=police,
                    jurisdiction=str(commune.code),
                    contacts=(("hotline", _number(p.number, 400 + i)),),
                )  # fmt: skip
    await session.flush()
    return ld.written

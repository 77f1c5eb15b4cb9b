"""How a key's scope is named for people (the keys list, /me): a jurisdiction of either map
with the unit of today that holds it, or a cooperation area and whether it is in force."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.cooperation.models import CooperationArea
from app.jurisdictions import eras
from app.jurisdictions.models import Jurisdiction


def in_force_on(valid_from: date | None, valid_to: date | None, on: date) -> bool:
    """Whether a period [valid_from, valid_to) holds day `on` (open ends: always)."""
    return (valid_from is None or valid_from <= on) and (valid_to is None or on < valid_to)


async def describe_areas(*, session: AsyncSession, ids: set[int]) -> dict[int, dict[str, Any]]:
    """For each cooperation area id of a key's scope: its name, whether it is in force today,
    and a one-line `label` ("cooperation area 2 Kế hoạch 172 … (ended 2026-12-01)")."""
    if not ids:
        return {}
    a = CooperationArea
    today = eras.today()
    rows = await session.execute(
        select(a.id, a.name, a.valid_from, a.valid_to).where(a.id.in_(sorted(ids)))
    )
    out: dict[int, dict[str, Any]] = {}
    for r in rows:
        in_force = in_force_on(r.valid_from, r.valid_to, today)
        state = ""
        if r.valid_to is not None and r.valid_to <= today:
            state = f" (ended {r.valid_to.isoformat()})"
        elif not in_force:
            state = f" (from {r.valid_from.isoformat()})"
        out[int(r.id)] = {
            "cooperation_area": int(r.id),
            "name_local": r.name,
            "level": "cooperation_area",
            "in_force": in_force,
            "label": f"cooperation area {r.id} {r.name}{state}",
        }
    return out


def _unit(code: str, name: str | None) -> dict[str, Any]:
    return {"code": code, "name_local": name}


def _named(unit: dict[str, Any]) -> str:
    return f"{unit['code']} {unit['name_local']}" if unit["name_local"] else unit["code"]


async def describe_scopes(*, session: AsyncSession, codes: set[str]) -> dict[str, dict[str, Any]]:
    """For each scope code: its Vietnamese name and level, whether it is in force today, the
    units of today that hold it, and a one-line `label` for people.

    A key scoped to a former province keeps the area it had (its incidents are found through
    their jurisdiction path); today that area lies in the 2025 province formed from it
    (`formed_from`): "VN-47 Kiên Giang (former; today in VN-P91 An Giang)". A commune is named
    with its province: "VN-C30337 Phường Hà Tiên (in VN-P91 An Giang)"."""
    if not codes:
        return {}
    j = Jurisdiction
    today = eras.today()
    rows = (
        await session.execute(
            select(j.code, j.name, j.name_local, j.level, j.parent_code, eras.in_force(j, today))
            .where(j.code.in_(sorted(codes)))
            .order_by(j.code, j.valid_from.asc().nulls_first())
        )
    ).all()
    units = {r.code: r for r in rows}  # the newest version of a code comes last, and wins
    # today's provinces formed from the former ones, and the provinces of today's communes
    successors = (
        await session.execute(
            select(j.code, j.name_local, j.name, j.formed_from)
            .where(j.level == "province", eras.in_force(j, today))
            .where(j.formed_from.overlap(sorted(codes)))
            .order_by(j.code)
        )
    ).all()
    parents_wanted = sorted(
        {str(u.parent_code) for u in units.values() if u.level == "commune" and u.parent_code}
    )
    parents = {
        r.code: _unit(r.code, r.name_local or r.name)
        for r in await session.execute(
            select(j.code, j.name, j.name_local).where(
                j.code.in_(parents_wanted), eras.in_force(j, today)
            )
        )
    }
    out: dict[str, dict[str, Any]] = {}
    for code in codes:
        u = units.get(code)
        if u is None:
            out[code] = {"code": code, "name_local": None, "level": None, "in_force": False,
                         "today_in": [], "label": f"{code} (unknown jurisdiction)"}  # fmt: skip
            continue
        me = _unit(code, u.name_local or u.name)
        in_force = bool(u[5])
        today_in = [
            _unit(s.code, s.name_local or s.name) for s in successors if code in s.formed_from
        ]
        if not in_force:
            where = f"; today in {', '.join(_named(t) for t in today_in)}" if today_in else ""
            label = f"{_named(me)} (former{where})"
        elif u.level == "commune" and u.parent_code in parents:
            today_in = [parents[u.parent_code]]
            label = f"{_named(me)} (in {_named(today_in[0])})"
        else:
            label = _named(me)
        out[code] = me | {
            "level": u.level, "in_force": in_force, "today_in": today_in, "label": label,
        }  # fmt: skip
    return out

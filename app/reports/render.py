"""The briefing as HTML (map and charts as inline SVG) and as PDF (WeasyPrint).

Nothing is fetched: the map is drawn from our own boundaries (app/reports/briefing.py), the
charts are SVG made here, the font is a file on this machine (Noto Sans, Debian's
fonts-noto-core; DejaVu Sans otherwise), embedded in the PDF by WeasyPrint (subset).
"""

from __future__ import annotations

import functools
import math
from datetime import datetime
from html import escape
from pathlib import Path
from typing import Any

import orjson

from app.analysis import stats
from app.i18n import Lang
from app.reports.briefing import MAP_H, MAP_W, SEVERE, Briefing, hexagon

HERE = Path(__file__).parent
STATUS_NAMES = Path(__file__).parents[1] / "web" / "static" / "i18n" / "common.json"
# the first file found of each weight is embedded; the names are Debian's
FONT_FILES = {
    "normal": (
        "/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf",
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    ),
    "bold": (
        "/usr/share/fonts/truetype/noto/NotoSans-Bold.ttf",
        "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    ),
}
# category colours, by the code's place in the alphabetical list of the period's categories
PALETTE = (
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf",
    "#bcbd22", "#7f7f7f",
)  # fmt: skip
HOT = {3: "#b2182b", 2: "#ef8a62", 1: "#fddbc7", -1: "#d1e5f0", -2: "#67a9cf", -3: "#2166ac"}

TEXT: dict[str, dict[Lang, str]] = {
    "title": {"vi": "Báo cáo tình hình", "en": "Briefing"},
    "period": {"vi": "Kỳ báo cáo", "en": "Period"},
    "generated": {"vi": "Lập lúc", "en": "Generated"},
    "scope": {"vi": "Phạm vi khóa truy cập", "en": "Key's scope"},
    "national_scope": {"vi": "toàn quốc", "en": "national"},
    "incidents": {"vi": "Số vụ việc", "en": "Incidents"},
    "clearance": {"vi": "Tỷ lệ làm rõ", "en": "Clearance rate"},
    "cleared": {"vi": "vụ đã làm rõ hoặc đã đóng", "en": "solved or closed"},
    "share": {"vi": "Tỷ trọng so với cả nước", "en": "Share of national"},
    "of_national": {"vi": "trên tổng số cả nước", "en": "of the national total"},
    "share_hidden": {
        "vi": "chỉ khóa toàn quốc mới xem được số cả nước",
        "en": "national keys only",
    },
    "change": {"vi": "So với kỳ trước", "en": "Against the previous period"},
    "previous": {"vi": "kỳ trước", "en": "previous period"},
    "significant": {"vi": "thay đổi có ý nghĩa thống kê", "en": "beyond chance"},
    "chance": {"vi": "trong mức ngẫu nhiên", "en": "within chance"},
    "map": {"vi": "Bản đồ khu vực", "en": "Map of the area"},
    "by_category": {"vi": "Theo loại vụ việc", "en": "By category"},
    "by_month": {"vi": "Theo tháng", "en": "By month"},
    "pairs": {
        "vi": "Các cặp địa phương giáp ranh nhiều vụ việc nhất",
        "en": "Busiest cross-boundary pairs",
    },
    "emerging": {"vi": "Điểm nóng đang hình thành", "en": "Emerging hot spots"},
    "severe": {"vi": "Vụ việc nghiêm trọng", "en": "Severe incidents"},
    "none": {"vi": "Không có.", "en": "None."},
    "when": {"vi": "Thời gian", "en": "When"},
    "category": {"vi": "Loại", "en": "Category"},
    "severity": {"vi": "Mức độ", "en": "Severity"},
    "status": {"vi": "Trạng thái", "en": "Status"},
    "place": {"vi": "Địa bàn", "en": "Place"},
    "unit": {"vi": "Đơn vị", "en": "Unit"},
    "description": {"vi": "Nội dung", "en": "Description"},
    "pair": {"vi": "Cặp tỉnh, thành phố", "en": "Pair of provinces"},
    "shared_km": {"vi": "Đường ranh giới (km)", "en": "Shared line (km)"},
    "near": {"vi": "Vụ việc trong 5 km", "en": "Incidents within 5 km"},
    "kind": {"vi": "Loại điểm nóng", "en": "Pattern"},
    "cells": {"vi": "Số ô", "en": "Cells"},
    "centre": {"vi": "Nơi (xã, tỉnh; tâm ô)", "en": "Where (commune, province; cell centre)"},
    "count12": {"vi": "Số vụ 12 tháng", "en": "Incidents, 12 months"},
    "trend": {"vi": "Xu hướng (z)", "en": "Trend (z)"},
    "legend_area": {"vi": "Khu vực báo cáo", "en": "Reported area"},
    "legend_border": {"vi": "Biên giới quốc gia", "en": "National border"},
    "legend_hot": {"vi": "Điểm nóng Gi* (90/95/99 %)", "en": "Gi* hot spot (90/95/99 %)"},
    "legend_cold": {"vi": "Điểm lạnh Gi*", "en": "Gi* cold spot"},
    "legend_severe": {"vi": "viền đen: mức độ 4–5", "en": "black ring: severity 4–5"},
}


def t(key: str, lang: Lang) -> str:
    """A label in the reader's language."""
    return TEXT[key][lang]


@functools.cache
def _statuses() -> dict[str, dict[str, str]]:
    raw = orjson.loads(STATUS_NAMES.read_bytes())
    return {k.removeprefix("status."): v for k, v in raw.items() if k.startswith("status.")}


def status_name(code: str, lang: Lang) -> str:
    """A status as the dashboard names it."""
    return _statuses().get(code, {}).get(lang, code)


def number(n: float, lang: Lang, digits: int = 0) -> str:
    """vi-VN: 1.234,5; en: 1,234.5."""
    s = f"{n:,.{digits}f}"
    return s.replace(",", "\x00").replace(".", ",").replace("\x00", ".") if lang == "vi" else s


def percent(r: float | None, lang: Lang, digits: int = 1) -> str:
    """A ratio as a percentage, or an em dash."""
    return "—" if r is None else f"{number(r * 100, lang, digits)} %"


def local_time(moment: datetime, lang: Lang) -> str:
    """dd/mm/yyyy hh:mm (vi) or yyyy-mm-dd hh:mm (en), Asia/Ho_Chi_Minh."""
    return moment.strftime("%d/%m/%Y %H:%M" if lang == "vi" else "%Y-%m-%d %H:%M")


def period_text(b: Briefing) -> str:
    """The period as days (local), both included."""
    fmt = "%d/%m/%Y" if b.lang == "vi" else "%Y-%m-%d"
    start = b.period.start.astimezone(b.generated_at.tzinfo)
    end = b.period.end.astimezone(b.generated_at.tzinfo)
    return f"{start.strftime(fmt)} – {end.strftime(fmt)}"


def _font_faces() -> str:
    faces = []
    for weight, files in FONT_FILES.items():
        for f in files:
            if Path(f).exists():
                faces.append(
                    f'@font-face {{ font-family: "Briefing Sans"; font-weight: {weight};'
                    f' src: url("{Path(f).as_uri()}"); }}'
                )
                break
    return "\n".join(faces)


# --- SVG --------------------------------------------------------------------------------------


def map_svg(b: Briefing) -> str:
    """The area, its neighbours, the national borders, hot spots and incidents, in EPSG:32648
    (ST_AsSVG writes y negated: the view box is in those units)."""
    m = b.map
    x1, y1, x2, y2 = m["box"]
    w, h = x2 - x1, y2 - y1
    px = w / MAP_W  # metres per drawing unit
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="{x1:.0f} {-y2:.0f} {w:.0f} {h:.0f}"'
        f' width="{MAP_W:.0f}" height="{MAP_H:.0f}" font-family="Briefing Sans, Noto Sans,'
        ' DejaVu Sans, sans-serif">',
        f'<rect x="{x1:.0f}" y="{-y2:.0f}" width="{w:.0f}" height="{h:.0f}" fill="#dbe8f2"/>',
    ]
    area = next((layer for layer in m["layers"] if layer["level"] == "area"), None)
    if area is not None:
        out.append(f'<clipPath id="area-clip"><path d="{area["d"]}"/></clipPath>')
    for layer in m["layers"]:
        if layer["level"] == "country":
            fill = "#fbfaf5" if layer["home"] else "#e4e2dc"
            out.append(
                f'<path d="{layer["d"]}" fill="{fill}" stroke="#8a8a8a"'
                f' stroke-width="{px * 0.8:.0f}" fill-rule="evenodd"/>'
            )
    if area is not None:
        out.append(f'<path d="{area["d"]}" fill="#fff4c2" stroke="none" fill-rule="evenodd"/>')
    for layer in m["layers"]:
        if layer["level"] == "province":
            out.append(
                f'<path d="{layer["d"]}" fill="none" stroke="#9a9a9a"'
                f' stroke-width="{px * 0.7:.0f}"/>'
            )
    cell_km = m["cell_km"]
    hot = []
    for cell in m["hot"]:
        corners = hexagon(cell["cell"][0], cell["cell"][1], cell_km)
        pts = " ".join(f"{x:.0f},{-y:.0f}" for x, y in corners)
        hot.append(f'<polygon points="{pts}" fill="{HOT[cell["bin"]]}" fill-opacity="0.85"/>')
    if hot:
        out.append('<g clip-path="url(#area-clip)">' + "".join(hot) + "</g>")
    if area is not None:
        out.append(
            f'<path d="{area["d"]}" fill="none" stroke="#1a1a1a" stroke-width="{px * 2.2:.0f}"'
            ' fill-rule="evenodd"/>'
        )
    for layer in m["layers"]:
        if layer["level"] == "border":
            out.append(
                f'<path d="{layer["d"]}" fill="none" stroke="#c62828"'
                f' stroke-width="{px * 2.2:.0f}" stroke-dasharray="{px * 7:.0f} {px * 3:.0f}"/>'
            )
    out.append(_points(m, px))
    font = px * 11
    view_area = w * h
    for layer in m["layers"]:
        if layer["level"] not in ("province", "country") or not layer["name"]:
            continue
        if layer["area"] < view_area * 0.02:
            continue
        lx, ly = layer["label"]
        size = font if layer["level"] == "province" else font * 1.15
        colour = "#333" if layer["level"] == "province" else "#666"
        out.append(
            f'<text x="{lx:.0f}" y="{-ly:.0f}" font-size="{size:.0f}" fill="{colour}"'
            f' text-anchor="middle">{escape(layer["name"])}</text>'
        )
    for arch in m["archipelagos"]:
        out.append(
            f'<text x="{arch["x"]:.0f}" y="{-arch["y"]:.0f}" font-size="{font:.0f}" fill="#0d3c61"'
            f' text-anchor="middle" font-style="italic">{escape(arch["label"])}</text>'
        )
    out.append(_scale_bar(x1, y1, w, px))
    out.append("</svg>")
    return "".join(out)


def _points(m: dict[str, Any], px: float) -> str:
    """The incidents as a few paths, one per colour (WeasyPrint draws an SVG element in about
    2 ms and an arc in about 0.5 ms: 3 000 circles took 6 s): each point a 1 m line with round
    caps, drawn twice, the ring (white; black for severity 4-5) under the colour; the severe
    last."""
    r = px * 2.6
    groups: dict[tuple[bool, str], list[str]] = {}
    for x, y, code, severity in m["points"]:
        colour = PALETTE[m["colours"].get(code, 0) % len(PALETTE)]
        groups.setdefault((severity >= SEVERE, colour), []).append(f"M{x:.0f} {-y:.0f}h1")
    out = []
    for (severe, colour), parts in sorted(groups.items()):
        d = "".join(parts)
        ring, width = ("#000", px * 1.0) if severe else ("#fff", px * 0.5)
        for stroke, w in ((ring, 2 * (r + width)), (colour, 2 * r)):
            out.append(
                f'<path d="{d}" fill="none" stroke="{stroke}" stroke-width="{w:.0f}"'
                ' stroke-linecap="round"/>'
            )
    return "".join(out)


def _scale_bar(x1: float, y1: float, w: float, px: float) -> str:
    target = w / 5
    step = 10 ** math.floor(math.log10(target))
    km_m = max(s * step for s in (1, 2, 5) if s * step <= target)
    x, y = x1 + px * 20, -(y1 + px * 22)
    label = f"{km_m / 1000:g} km"
    return (
        f'<rect x="{x - px * 6:.0f}" y="{y - px * 16:.0f}" width="{km_m + px * 12:.0f}"'
        f' height="{px * 24:.0f}" fill="#fff" fill-opacity="0.8"/>'
        f'<line x1="{x:.0f}" y1="{y:.0f}" x2="{x + km_m:.0f}" y2="{y:.0f}" stroke="#000"'
        f' stroke-width="{px * 2:.0f}"/>'
        f'<text x="{x + km_m / 2:.0f}" y="{y - px * 4:.0f}" font-size="{px * 10:.0f}"'
        f' text-anchor="middle">{label}</text>'
    )


def category_chart(b: Briefing) -> str:
    """Horizontal bars, busiest category first, each under its name (names are long)."""
    rows = b.by_category
    if not rows:
        return f"<p class='note'>{t('none', b.lang)}</p>"
    width, bar_h, row_h = 340, 8, 21
    height = len(rows) * row_h + 4
    top = max(g["count"] for g in rows) or 1
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}"'
           f' viewBox="0 0 {width} {height}" font-size="9">']  # fmt: skip
    for n, g in enumerate(rows):
        y = n * row_h + 11
        length = (width - 50) * g["count"] / top
        colour = PALETTE[b.map["colours"].get(g["code"], 0) % len(PALETTE)]
        out.append(
            f'<text x="0" y="{y}">{escape(g["name"])}</text>'
            f'<rect x="0" y="{y + 3}" width="{length:.1f}" height="{bar_h}" fill="{colour}"/>'
            f'<text x="{length + 3:.1f}" y="{y + 3 + bar_h - 1}">'
            f"{number(g['count'], b.lang)}</text>"
        )
    out.append("</svg>")
    return "".join(out)


def month_chart(b: Briefing) -> str:
    """Columns for the months ending with the period's; the period's months dark."""
    months = b.by_month
    width, height, base, left = 340, 170, 140, 6
    top = max((m["count"] for m in months), default=0) or 1
    slot = (width - left * 2) / max(len(months), 1)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}"'
           f' viewBox="0 0 {width} {height}" font-size="8">']  # fmt: skip
    for n, m in enumerate(months):
        hgt = (base - 16) * m["count"] / top
        x = left + n * slot
        inside = m["month"] in b.period_months
        colour = "#2f5597" if inside else "#a9b8d6"
        label = m["month"][5:] + ("/" + m["month"][2:4] if n == 0 or m["month"][5:] == "01" else "")
        out.append(
            f'<rect x="{x + 2:.1f}" y="{base - hgt:.1f}" width="{slot - 4:.1f}"'
            f' height="{hgt:.1f}" fill="{colour}"/>'
            f'<text x="{x + slot / 2:.1f}" y="{base - hgt - 2:.1f}" text-anchor="middle">'
            f"{number(m['count'], b.lang)}</text>"
            f'<text x="{x + slot / 2:.1f}" y="{base + 11}" text-anchor="middle">{label}</text>'
        )
    out.append(
        f'<line x1="{left}" y1="{base}" x2="{width - left}" y2="{base}" stroke="#555"'
        ' stroke-width="0.6"/></svg>'
    )
    return "".join(out)


# --- the page ---------------------------------------------------------------------------------


def _headline(b: Briefing) -> str:
    lang = b.lang
    change = b.change
    sign = "+" if change > 0 else ""
    cls = "up" if change > 0 else "down" if change < 0 else ""
    pct = "" if b.change_pct is None else f" ({sign}{percent(b.change_pct, lang)})"
    share_value = percent(b.share, lang, 2) if b.national is not None else "—"
    share_note = (
        f"{number(b.national, lang)} {t('of_national', lang)}"
        if b.national is not None
        else t("share_hidden", lang)
    )
    return (
        '<table class="headline"><tr>'
        f'<td><span class="value">{number(b.incidents, lang)}</span>'
        f'<span class="label">{t("incidents", lang)}</span></td>'
        f'<td><span class="value">{percent(b.clearance_rate, lang)}</span>'
        f'<span class="label">{t("clearance", lang)}</span>'
        f'<span class="note">{number(b.cleared, lang)} {t("cleared", lang)}</span></td>'
        f'<td><span class="value">{share_value}</span>'
        f'<span class="label">{t("share", lang)}</span>'
        f'<span class="note">{share_note}</span></td>'
        f'<td><span class="value {cls}">{sign}{number(change, lang)}</span>'
        f'<span class="note {cls}">{pct.strip(" ()") or "—"}</span>'
        f'<span class="label">{t("change", lang)}</span>'
        f'<span class="note">{t("previous", lang)}: {number(b.previous, lang)}'
        f" ({_previous_text(b)})</span>{_test_note(b)}</td>"
        "</tr></table>"
    )


def _test_note(b: Briefing) -> str:
    """The exact Poisson test of the change (p < 0.05: beyond chance), as /analysis/stats."""
    if b.p_value is None:
        return ""
    verdict = t("significant" if b.p_value < stats.ALPHA else "chance", b.lang)
    p = "< 0,001" if b.p_value < 0.001 else f"= {number(b.p_value, b.lang, 3)}"
    if b.lang == "en":
        p = p.replace(",", ".")
    return f'<span class="note">{verdict} (Poisson, p {p})</span>'


def _previous_text(b: Briefing) -> str:
    fmt = "%d/%m/%Y" if b.lang == "vi" else "%Y-%m-%d"
    p = b.period.previous
    zone = b.generated_at.tzinfo
    return f"{p.start.astimezone(zone).strftime(fmt)} – {p.end.astimezone(zone).strftime(fmt)}"


def _legend(b: Briefing) -> str:
    lang = b.lang
    keys = [
        f'<span class="key"><i style="background:#fff4c2;border:1.2pt solid #1a1a1a"></i>'
        f"{t('legend_area', lang)}</span>",
        f'<span class="key"><i style="background:none;border:none;border-top:1.5pt dashed'
        f' #c62828;height:0"></i>{t("legend_border", lang)}</span>',
        f'<span class="key"><i style="background:{HOT[3]}"></i><i style="background:{HOT[2]}">'
        f'</i><i style="background:{HOT[1]}"></i>{t("legend_hot", lang)}</span>',
        f'<span class="key"><i style="background:{HOT[-3]}"></i>{t("legend_cold", lang)}</span>',
    ]
    if not b.map["viewer"]:
        for g in sorted(b.by_category, key=lambda g: g["code"]):
            colour = PALETTE[b.map["colours"][g["code"]] % len(PALETTE)]
            keys.append(
                f'<span class="key"><i style="background:{colour};border-radius:50%"></i>'
                f"{escape(g['name'])}</span>"
            )
        keys.append(f'<span class="key">{t("legend_severe", lang)}</span>')
    return '<div class="legend">' + "".join(keys) + "</div>"


def _map_caption(b: Briefing) -> str:
    m, lang = b.map, b.lang
    cell = number(m["cell_km"], lang, 1 if m["cell_km"] % 1 else 0)
    if lang == "vi":
        parts = [
            f"Điểm nóng: Getis-Ord Gi* trên lưới lục giác {cell} km các vụ việc trong kỳ.",
        ]
        if m["viewer"]:
            parts.append("Khóa xem (viewer) chỉ thấy số liệu tổng hợp: không vẽ từng vụ việc.")
        elif len(m["points"]) < m["points_total"]:
            parts.append(
                f"Vẽ {number(len(m['points']), lang)} trên {number(m['points_total'], lang)} vụ"
                " việc (nghiêm trọng nhất, mới nhất trước)."
            )
        parts.append("Ranh giới theo đơn vị hành chính hiện hành; hệ tọa độ WGS 84 / UTM 48N.")
    else:
        parts = [f"Hot spots: Getis-Ord Gi* of the period's incidents on {cell} km hexagons."]
        if m["viewer"]:
            parts.append("A viewer key sees aggregates only: no incident is drawn.")
        elif len(m["points"]) < m["points_total"]:
            parts.append(
                f"{number(len(m['points']), lang)} of {number(m['points_total'], lang)}"
                " incidents drawn (the most severe, then the latest)."
            )
        parts.append("Today's administrative units; WGS 84 / UTM zone 48N.")
    return " ".join(parts)


def _cols(*percent: int) -> str:
    """Fixed column widths (a fixed table layout is laid out once, not measured first)."""
    return "<colgroup>" + "".join(f'<col style="width:{p}%">' for p in percent) + "</colgroup>"


def _pairs_table(b: Briefing) -> str:
    lang = b.lang
    if not b.pairs:
        return f"<p class='note'>{t('none', lang)}</p>"
    rows = "".join(
        f"<tr><td>{escape(p['a_name'])} – {escape(p['b_name'])}</td>"
        f"<td class='n'>{number(p['shared_km'], lang, 1)}</td>"
        f"<td class='n'>{number(p['count'], lang)}</td></tr>"
        for p in b.pairs
    )
    return (
        f"<table class='list'>{_cols(52, 24, 24)}<tr><th>{t('pair', lang)}</th>"
        f"<th>{t('shared_km', lang)}</th>"
        f"<th>{t('near', lang)}</th></tr>{rows}</table>"
    )


def _emerging_part(b: Briefing) -> str:
    lang, e = b.lang, b.emerging
    steps = e["steps"]
    span = f"{steps[0]} – {steps[-1]}" if steps else ""
    intro = (
        f"Khối không gian – thời gian: {number(e['cells'], lang)} ô × {len(steps)} tháng ({span}),"
        f" {number(e['incidents'], lang)} vụ việc; phân loại theo Esri (Gi* và xu hướng"
        " Mann-Kendall)."
        if lang == "vi"
        else f"Space-time cube: {number(e['cells'], lang)} cells × {len(steps)} months ({span}),"
        f" {number(e['incidents'], lang)} incidents; Esri's categories (Gi* and the Mann-Kendall"
        " trend)."
    )
    if not e["totals"]:
        return f"<p class='note'>{intro}</p><p class='note'>{t('none', lang)}</p>"
    totals = "; ".join(f"{escape(x['name'])}: {number(x['cells'], lang)}" for x in e["totals"])
    rows = "".join(
        f"<tr><td>{escape(r['name'])}</td>"
        f"<td>{escape(r['place']) + '<br>' if r.get('place') else ''}"
        f"<span class='note'>{number(r['lon'], lang, 3)}, {number(r['lat'], lang, 3)}</span></td>"
        f"<td class='n'>{number(r['count'], lang)}</td>"
        f"<td class='n'>{number(r['trend_z'], lang, 2) if r['trend_z'] == r['trend_z'] else '—'}"
        "</td></tr>"
        for r in e["rows"]
    )
    return (
        f"<p class='note'>{intro}</p><p class='note'>{t('cells', lang)}: {totals}.</p>"
        f"<table class='list'>{_cols(34, 30, 18, 18)}<tr><th>{t('kind', lang)}</th>"
        f"<th>{t('centre', lang)}</th>"
        f"<th>{t('count12', lang)}</th><th>{t('trend', lang)}</th></tr>{rows}</table>"
    )


def _severe_table(b: Briefing) -> str:
    lang = b.lang
    head = (
        f"Mức độ {SEVERE}–5: {number(b.severe_total, lang)} vụ việc trong kỳ."
        if lang == "vi"
        else f"Severity {SEVERE}–5: {number(b.severe_total, lang)} incidents in the period."
    )
    if b.severe is None:
        hidden = (
            "Khóa xem (viewer) chỉ thấy số liệu tổng hợp: không liệt kê từng vụ việc."
            if lang == "vi"
            else "A viewer key sees aggregates only: incidents are not listed."
        )
        return f"<p class='note'>{head} {hidden}</p>"
    if not b.severe:
        return f"<p class='note'>{head}</p>"
    if b.severe_total > len(b.severe):
        head += (
            f" Liệt kê {len(b.severe)} vụ (nghiêm trọng nhất, mới nhất trước)."
            if lang == "vi"
            else f" The {len(b.severe)} most severe (then latest) are listed."
        )
    rows = []
    for r in b.severe:
        text = r["description"]
        if len(text) > 160:
            text = text[:157] + "…"
        rows.append(
            f"<tr><td>{local_time(r['occurred_at'], lang)}</td><td>{escape(r['category_name'])}"
            f"</td><td class='n'>{r['severity']}</td><td>{escape(status_name(r['status'], lang))}"
            f"</td><td>{escape(r['place'])}</td><td>{escape(r['unit'])}</td>"
            f"<td>{escape(text)}</td></tr>"
        )
    return (
        f"<p class='note'>{head}</p><table class='list'>{_cols(11, 16, 6, 10, 17, 15, 25)}"
        f"<tr><th>{t('when', lang)}</th>"
        f"<th>{t('category', lang)}</th><th>{t('severity', lang)}</th>"
        f"<th>{t('status', lang)}</th><th>{t('place', lang)}</th><th>{t('unit', lang)}</th>"
        f"<th>{t('description', lang)}</th></tr>{''.join(rows)}</table>"
    )


def html(b: Briefing) -> str:
    """The whole report as one HTML document (inline CSS and SVG: nothing else to fetch)."""
    lang = b.lang
    css = (HERE / "templates" / "briefing.css").read_text(encoding="utf-8")
    scope = b.scope or t("national_scope", lang)
    return (
        f'<!DOCTYPE html><html lang="{lang}"><head><meta charset="utf-8">'
        f"<title>{t('title', lang)}: {escape(b.area.name)} · {period_text(b)}</title>"
        f"<style>{_font_faces()}\n{css}</style></head><body>"
        f"<h1>{escape(b.area.name)}</h1>"
        f"<p class='period'>{t('title', lang)} · {t('period', lang)}: {period_text(b)}</p>"
        f"<p class='meta'>{t('generated', lang)}: {local_time(b.generated_at, lang)}"
        f" (Asia/Ho_Chi_Minh) · {t('scope', lang)}: {escape(scope)} · area={escape(b.area.key)}"
        "</p>"
        f"{_headline(b)}"
        f"<h2>{t('map', lang)}</h2><figure class='map'>{map_svg(b)}"
        f"<figcaption>{_map_caption(b)}</figcaption></figure>{_legend(b)}"
        f"<table class='charts'><tr><td><h2>{t('by_category', lang)}</h2>{category_chart(b)}"
        f"</td><td><h2>{t('by_month', lang)}</h2>{month_chart(b)}</td></tr></table>"
        f"<h2>{t('pairs', lang)}</h2>{_pairs_table(b)}"
        f"<h2>{t('emerging', lang)}</h2>{_emerging_part(b)}"
        f"<h2>{t('severe', lang)}</h2>{_severe_table(b)}"
        "</body></html>"
    )


def pdf(document: str) -> bytes:
    """The HTML as PDF (WeasyPrint; the fonts embedded as subsets). CPU-bound: call it in a
    thread."""
    import weasyprint  # imported here: Pango is loaded only by those who print

    result: bytes = weasyprint.HTML(string=document, base_url=str(HERE)).write_pdf()
    return result


def filename(b: Briefing, fmt: str) -> str:
    """`briefing-<area>-<start>-<end>.<fmt>` (ASCII)."""
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in b.area.key)[:60]
    zone = b.generated_at.tzinfo
    start = b.period.start.astimezone(zone).strftime("%Y%m%d")
    end = b.period.end.astimezone(zone).strftime("%Y%m%d")
    return f"briefing-{safe}-{start}-{end}.{fmt}"


def render(b: Briefing, fmt: str) -> bytes:
    """The report's bytes in `fmt` (pdf or html)."""
    document = html(b)
    return pdf(document) if fmt == "pdf" else document.encode()


def media_type(fmt: str) -> str:
    """The Content-Type of `fmt`."""
    return "application/pdf" if fmt == "pdf" else "text/html; charset=utf-8"

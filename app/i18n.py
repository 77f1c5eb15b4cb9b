"""The reader's language: `lang=vi|en`, else the Accept-Language header, else Vietnamese; and
names in it (`display_name`), built in SQL like the rest of a Feature.

Every route that names places takes `LangDep` and answers with `headers(lang)`
(Content-Language, and Vary: Accept-Language so a cache keeps one copy per language).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from fastapi import Depends, Header, Query
from sqlalchemy import ColumnElement, and_, case, func, literal

from app.headers import preferred

Lang = Literal["vi", "en"]
LANGS: tuple[Lang, ...] = get_args(Lang)
DEFAULT: Lang = "vi"  # the users read Vietnamese; English is the second language

# Countries in Vietnamese. The country rows' `name_local` is each country's own name in its own
# script (中国, ລາວ, កម្ពុជា, ประเทศไทย), which is what "local name" means; a Vietnamese reader
# reads the Vietnamese exonym. A country not listed here is shown by its English name.
COUNTRY_NAMES_VI: dict[str, str] = {
    "VNM": "Việt Nam",
    "CHN": "Trung Quốc",
    "LAO": "Lào",
    "KHM": "Campuchia",
    "THA": "Thái Lan",
}


def _language(tag: str) -> Lang | None:
    primary = tag.split("-")[0]
    return "vi" if primary == "vi" else "en" if primary == "en" else None


def from_accept_language(header: str | None) -> Lang | None:
    """The supported language the header prefers most (RFC 9110 §12.5.4: highest q, the first
    listed on a tie; `vi-VN` counts as vi, `en-GB` as en; q=0 means "not this one"), or None
    when it names none of them (`*` included: the default applies). Never an error: a header
    we cannot read is as good as none."""
    return preferred(header, _language)


def choose(lang: str | None, accept_language: str | None) -> Lang:
    """`lang` when given, else the header's preference, else Vietnamese."""
    if lang in LANGS:
        return "vi" if lang == "vi" else "en"
    return from_accept_language(accept_language) or DEFAULT


async def language(
    lang: Annotated[
        Lang | None,
        Query(
            description="language of `display_name`: vi (names with diacritics, the default)"
            " or en; wins over the Accept-Language header"
        ),
    ] = None,
    accept_language: Annotated[
        str | None, Header(description="used when `lang` is not given, e.g. `en-GB,en;q=0.9`")
    ] = None,
) -> Lang:
    """The dependency every route naming places takes."""
    return choose(lang, accept_language)


LangDep = Annotated[Lang, Depends(language)]


def headers(lang: Lang) -> dict[str, str]:
    """The response headers of an answer in `lang`."""
    return {"Content-Language": lang, "Vary": "Accept-Language"}


def display_name(j: Any, lang: Lang) -> ColumnElement[Any]:
    """SQL: the name of jurisdiction `j` (the table or an alias) a reader of `lang` reads.

    en: the English name. vi: countries by COUNTRY_NAMES_VI; a unit whose local name lacks its
    type gets it in front ('Tỉnh An Giang', 'Thành phố Hồ Chí Minh'); communes already carry it
    ('Phường Hà Tiên'); the 63 former provinces have no type and keep their local name."""
    if lang == "en":
        english: ColumnElement[Any] = j.name
        return english
    country = case(
        *((j.code == code, literal(name)) for code, name in COUNTRY_NAMES_VI.items()),
        else_=j.name,
    )
    typed = and_(
        j.type_local.is_not(None),
        j.name_local.is_not(None),
        ~func.starts_with(j.name_local, j.type_local + literal(" ")),
    )
    return case(
        (j.level == "country", country),
        (typed, j.type_local + literal(" ") + j.name_local),
        else_=func.coalesce(j.name_local, j.name),
    )


def post_display_name(p: Any, lang: Lang) -> ColumnElement[Any]:
    """SQL: the name of border post `p` in `lang` (vi: the local name when there is one)."""
    if lang == "en":
        english: ColumnElement[Any] = p.name
        return english
    return func.coalesce(p.name_local, p.name)

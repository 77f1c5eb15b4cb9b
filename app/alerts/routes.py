"""/alert-rules and /alerts: rules (create, read, change), the alerts a key receives, and
acknowledging them. Alerts also arrive on the live feed (/events) and at webhooks."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query
from fastapi.responses import JSONResponse

from app.alerts import service
from app.auth.deps import Reader
from app.db import SessionDep
from app.errors import PreconditionRequired
from app.incidents.service import etag, parse_if_match
from app.openapi import problems

router = APIRouter(tags=["alerts"])

RuleId = Annotated[int, Path(ge=1, le=2**31 - 1, description="the rule's id")]
AlertId = Annotated[int, Path(ge=1, le=2**62, description="the alert's id")]


def _rule_response(
    rule: dict[str, Any], secret: str | None = None, status: int = 200, **headers: str
) -> JSONResponse:
    body = rule | ({"webhook_secret": secret} if secret else {})
    return JSONResponse(
        body, status_code=status, headers={"ETag": etag(rule["version"]), **headers}
    )


@router.get("/alert-rules", summary="The alert rules whose alerts this key receives")
async def list_rules(session: SessionDep, principal: Reader) -> JSONResponse:
    """Own rules, the unit's, the scope's default rule (a national admin: every rule)."""
    return JSONResponse({"rules": await service.list_rules(session, principal)})


@router.post(
    "/alert-rules",
    status_code=201,
    summary="Create an alert rule (owned by this key's principal or its unit)",
    responses=problems(403),
)
async def create_rule(body: service.RuleIn, session: SessionDep, principal: Reader) -> JSONResponse:
    """With a webhook (admins), the answer holds its signing secret once: keep it."""
    rule, secret = await service.create_rule(session, identity=principal, body=body)
    await session.commit()
    return _rule_response(rule, secret, 201, Location=f"/alert-rules/{rule['id']}")


@router.get(
    "/alert-rules/{rule_id:int}", summary="One alert rule, with ETag", responses=problems(404)
)
async def get_rule(rule_id: RuleId, session: SessionDep, principal: Reader) -> JSONResponse:
    """404 for rules the key neither receives nor may change."""
    return _rule_response(await service.get_rule(session, principal, rule_id))


@router.patch(
    "/alert-rules/{rule_id:int}",
    summary="Change an alert rule (If-Match required); `active: false` turns it off",
    responses=problems(403, 404, 412, 428),
)
async def patch_rule(
    rule_id: RuleId,
    body: service.RulePatch,
    session: SessionDep,
    principal: Reader,
    if_match: Annotated[str | None, Header(max_length=100)] = None,
) -> JSONResponse:
    """Audited with before and after; a new webhook URL gets a new secret (shown once)."""
    if if_match is None:
        raise PreconditionRequired("send If-Match with the ETag you read (GET /alert-rules/{id})")
    rule, secret = await service.update_rule(
        session, identity=principal, rule_id=rule_id, patch=body,
        expected_version=parse_if_match(if_match) or 0,
    )  # fmt: skip
    await session.commit()
    return _rule_response(rule, secret)


@router.get("/alerts", summary="The alerts this key receives, newest first")
async def list_alerts(
    session: SessionDep,
    principal: Reader,
    acknowledged: Annotated[bool | None, Query(description="only (not) acknowledged")] = None,
    before: Annotated[int | None, Query(ge=1, description="the next page: `next_before`")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> JSONResponse:
    """With `unacknowledged`: how many of them nobody has acknowledged yet."""
    page = await service.list_alerts(
        session, principal, acknowledged=acknowledged, before=before, limit=limit
    )
    return JSONResponse(page)


@router.post(
    "/alerts/{alert_id:int}/ack",
    summary="Acknowledge an alert (everyone who receives it sees who and when)",
    responses=problems(404),
)
async def acknowledge(alert_id: AlertId, session: SessionDep, principal: Reader) -> JSONResponse:
    """Idempotent: acknowledging an acknowledged alert answers the first acknowledgement."""
    alert = await service.acknowledge(session, principal, alert_id)
    await session.commit()
    return JSONResponse(alert)

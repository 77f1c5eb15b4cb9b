"""/alert-rules and /alerts: rules (create, read, change), the alerts a key receives, and
acknowledging them. Alerts also arrive on the live feed (/events) and at webhooks, whose
deliveries admins list and replay (/alerts/deliveries)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query
from fastapi.responses import JSONResponse

from app.alerts import deliveries, service
from app.auth.deps import Admin, Reader
from app.db import SessionDep
from app.incidents.service import etag, required_version
from app.openapi import problems

router = APIRouter(tags=["alerts"])

RuleId = Annotated[int, Path(ge=1, le=2**31 - 1, description="the rule's id")]
AlertId = Annotated[int, Path(ge=1, le=2**62, description="the alert's id")]
DeliveryId = Annotated[int, Path(ge=1, le=2**62, description="the webhook delivery's id")]


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
    expected = required_version(if_match, "/alert-rules/{id}")
    rule, secret = await service.update_rule(
        session, identity=principal, rule_id=rule_id, patch=body, expected_version=expected,
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


@router.get(
    "/alerts/deliveries",
    summary="Webhook deliveries, newest first (admins: national every one, scoped those of"
    " the rules of their scope)",
    responses=problems(403),
)
async def list_deliveries(
    session: SessionDep,
    admin: Admin,
    state: Annotated[
        deliveries.State | None,
        Query(description="pending (to be sent or retried), delivered (2xx), dead (gave up)"),
    ] = None,
    before: Annotated[
        int | None, Query(ge=1, le=2**62, description="the next page: `next_before`")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> JSONResponse:
    """Each with its alert (id, Idempotency-Key), rule, URL, state, attempts, next attempt,
    the last answer's status and error, delivery time. docs/webhooks.md."""
    page = await deliveries.list_deliveries(session, admin, state=state, before=before, limit=limit)
    return JSONResponse(page)


@router.post(
    "/alerts/deliveries/{delivery_id:int}/replay",
    summary="Send a dead (or delivered) webhook delivery again, from its first attempt",
    responses=problems(403, 404, 409),
)
async def replay_delivery(
    delivery_id: DeliveryId, session: SessionDep, admin: Admin
) -> JSONResponse:
    """It becomes pending now, with no attempts, to the rule's current webhook (audited:
    webhook_replay); the receiver gets the alert's same Idempotency-Key. 409 when pending."""
    delivery = await deliveries.replay(session, admin, delivery_id)
    await session.commit()
    return JSONResponse(delivery)

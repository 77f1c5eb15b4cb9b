"""GET /metrics: open to the operator networks (BORDERWATCH_METRICS_NETWORKS), otherwise for an
admin key only."""

from __future__ import annotations

import asyncio
from ipaddress import ip_address
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from app.auth.deps import client_address, current_principal
from app.db import SessionDep
from app.errors import Forbidden
from app.openapi import problems

router = APIRouter(tags=["health"])


def from_operator_network(request: Request) -> bool:
    """Whether the request comes from an address of BORDERWATCH_METRICS_NETWORKS (the client's
    address as the server sees it: behind a proxy on this host, every request comes from it)."""
    try:
        address = ip_address(client_address(request))
    except ValueError:  # "unknown", or a name a test transport made up
        return False
    if address.version == 6 and address.ipv4_mapped is not None:  # ::ffff:127.0.0.1
        address = address.ipv4_mapped
    return any(address in network for network in request.app.state.settings.metrics_networks)


async def metrics_reader(request: Request, session: SessionDep) -> None:
    """Admit the operator networks without a key, anyone else with an admin key only (401
    without one, 403 for another role)."""
    if from_operator_network(request):
        return
    principal = await current_principal(request, session)
    if principal.role != "admin":
        raise Forbidden(
            "/metrics needs an admin key outside the operator networks"
            " (BORDERWATCH_METRICS_NETWORKS)",
            allowed_roles=["admin"],
        )


@router.get(
    "/metrics",
    summary="Service metrics in the Prometheus text format",
    response_class=Response,
    responses={
        200: {
            "description": "the metrics (docs/observability.md lists them)",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        },
        **problems(401, 403, 429, 503),
    },
)
async def read_metrics(request: Request, _: Annotated[None, Depends(metrics_reader)]) -> Response:
    """Counters, histograms and gauges of this process (of every worker with several); no
    label carries incident data."""
    # in a thread: tens of ms with several workers' files to merge (docs/performance.md),
    # which the event loop would otherwise stall for every other request of this worker
    body = await asyncio.to_thread(request.app.state.metrics.exposition)
    return Response(body, media_type=CONTENT_TYPE_LATEST)

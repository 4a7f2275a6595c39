"""Env hub routes: ``/api/v1/hub`` (list, push), ``/api/v1/hub/{name}`` (show), ``.../versions/{version}``.

:func:`router_for` gives the app its :class:`~rock_env.server.hub.Hub` (an admin's hub also
resolves ``hub:`` ids for this process's registry) and returns the router.
"""

from __future__ import annotations

import weakref

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response

from rock_env.protocol.hub import (
    HUB_NAME_PATTERN,
    MAX_HUB_VERSION,
    HubEntry,
    HubList,
    HubPushRequest,
    HubPushResponse,
    HubVersion,
)
from rock_env.server.hub import Hub
from rock_env.server.routes._common import (
    ERROR_RESPONSES,
    body_schema,
    model_response,
    owner_of,
    parse_body,
    service_of,
)
from rock_env.server.service import Service

router = APIRouter(prefix="/api/v1/hub", tags=["hub"])
_hubs: weakref.WeakKeyDictionary[Service, Hub] = weakref.WeakKeyDictionary()

NamePath = Path(pattern=HUB_NAME_PATTERN, description="hub name, e.g. sokoban-tiny")


def router_for(service: Service) -> APIRouter:
    """The hub router for an app of ``service`` (an admin's hub resolves ``hub:`` ids in this process)."""
    hub = hub_of(service)
    if service.role == "admin":
        hub.register()
    return router


def hub_of(service: Service) -> Hub:
    """The hub of ``service`` (made on first use)."""
    hub = _hubs.get(service)
    if hub is None:
        hub = _hubs[service] = Hub(service)
    return hub


@router.get("", response_model=HubList, responses=ERROR_RESPONSES, summary="List hub envs")
async def list_hub(
    request: Request,
    tag: str | None = Query(default=None, max_length=64, description="only specs with this tag"),
    q: str | None = Query(default=None, max_length=256, description="substring of the name or description"),
) -> Response:
    """One summary per hub name (its latest version), sorted by name."""
    svc = service_of(request)
    return model_response(await svc.blocking(hub_of(svc).list, tag, q))


@router.post(
    "",
    response_model=HubPushResponse,
    status_code=201,
    responses={**ERROR_RESPONSES, 200: {"model": HubPushResponse, "description": "identical version existed"}},
    summary="Push a hub spec version",
    openapi_extra=body_schema(HubPushRequest),
)
async def push_hub(request: Request) -> Response:
    """Check and store a spec version (201); the identical version again answers 200; other content 409."""
    svc = service_of(request)
    body = await parse_body(request, HubPushRequest)
    version, created = await svc.blocking(hub_of(svc).push, body.spec, owner_of(request))
    return model_response(HubPushResponse(created=created, version=version), 201 if created else 200)


@router.get("/{name}", response_model=HubEntry, responses=ERROR_RESPONSES, summary="Show a hub env")
async def show_hub(request: Request, name: str = NamePath) -> Response:
    """Every version of ``name``, newest first."""
    svc = service_of(request)
    return model_response(await svc.blocking(hub_of(svc).entry, name))


@router.get(
    "/{name}/versions/{version}", response_model=HubVersion, responses=ERROR_RESPONSES, summary="Get one version"
)
async def get_hub_version(
    request: Request, name: str = NamePath, version: int = Path(ge=0, lt=MAX_HUB_VERSION)
) -> Response:
    """One version of ``name`` with what the server builds for it."""
    svc = service_of(request)
    return model_response(await svc.blocking(hub_of(svc).version, name, version))


__all__ = ["hub_of", "router", "router_for"]

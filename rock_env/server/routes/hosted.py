"""A worker's control routes: the admin creates envs and vector envs from the spec it resolved.

Not part of the public API (hidden from /openapi.json); only the cluster token may call them
(the admin's), and only on a worker: see :mod:`rock_env.protocol.control`.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic_core import to_json

from rock_env.errors import RequestInvalid, RockEnvError
from rock_env.protocol import error_body
from rock_env.protocol.control import (
    HOSTED_ENVS_BATCH_PATH,
    HOSTED_ENVS_PATH,
    HOSTED_VECS_PATH,
    HostedEnvMake,
    HostedEnvMakeBatch,
    HostedEnvMakeItem,
    HostedVecMake,
)
from rock_env.registry.spec import EnvSpec
from rock_env.server import env_ops
from rock_env.server.routes._common import model_response, owner_of, parse_body, raw_json, service_of
from rock_env.server.routes.envs import make_env_op, make_vec_op
from rock_env.server.service import Service

router = APIRouter(include_in_schema=False)


def _hosted_service(request: Request) -> Service:
    """The worker's service, after checking that this is a worker and the caller its admin."""
    svc = service_of(request)
    if svc.role != "worker":
        raise RequestInvalid("this is an admin: only workers take hosted creations; use /api/v1/envs.")
    svc.check_cluster_caller(owner_of(request))
    return svc


async def _hosted(request: Request, model: type[HostedEnvMake] | type[HostedVecMake]) -> Response:
    """Check the caller (the admin, on a worker), parse the body and build what it asks for."""
    svc = _hosted_service(request)
    body = await parse_body(request, model)
    spec = EnvSpec.from_dict(body.spec)
    if isinstance(body, HostedEnvMake):
        return model_response(await make_env_op(svc, request, body.request, spec))
    return model_response(await make_vec_op(svc, request, body.request, spec))


@router.post(HOSTED_ENVS_PATH)
async def hosted_env(request: Request) -> Response:
    """Build one env from the admin's resolved spec."""
    return await _hosted(request, HostedEnvMake)


@router.post(HOSTED_ENVS_BATCH_PATH)
async def hosted_env_batch(request: Request) -> Response:
    """Build several envs from the admin's resolved specs, each under the id the admin chose; each
    answers on its own (see :mod:`rock_env.server.peer_batch`)."""
    svc = _hosted_service(request)
    body = await parse_body(request, HostedEnvMakeBatch)
    owner = owner_of(request)
    specs: dict[str, EnvSpec] = {}

    async def make(item: HostedEnvMakeItem) -> dict[str, Any]:
        try:
            key = json.dumps(item.spec, sort_keys=True)
            spec = specs.get(key) or specs.setdefault(key, EnvSpec.from_dict(item.spec))
            info = await env_ops.make_env(svc, owner, item.id, item.request, spec)
        except RockEnvError as exc:
            return {"result": None, "error": error_body(exc).model_dump(mode="json")}
        return {"result": info.model_dump(mode="json"), "error": None}

    results = await asyncio.gather(*(make(item) for item in body.items))
    return raw_json(to_json({"results": results}))


@router.post(HOSTED_VECS_PATH)
async def hosted_vec(request: Request) -> Response:
    """Build a vector env from the admin's resolved spec."""
    return await _hosted(request, HostedVecMake)

"""A worker's control routes: the admin creates envs and vector envs from the spec it resolved.

Not part of the public API (hidden from /openapi.json); only the cluster token may call them
(the admin's), and only on a worker: see :mod:`rock_env.protocol.control`.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from rock_env.errors import RequestInvalid
from rock_env.protocol.control import HOSTED_ENVS_PATH, HOSTED_VECS_PATH, HostedEnvMake, HostedVecMake
from rock_env.registry.spec import EnvSpec
from rock_env.server.routes._common import model_response, owner_of, parse_body, service_of
from rock_env.server.routes.envs import make_env_op, make_vec_op

router = APIRouter(include_in_schema=False)


async def _hosted(request: Request, model: type[HostedEnvMake] | type[HostedVecMake]) -> Response:
    """Check the caller (the admin, on a worker), parse the body and build what it asks for."""
    svc = service_of(request)
    if svc.role != "worker":
        raise RequestInvalid("this is an admin: only workers take hosted creations; use /api/v1/envs.")
    svc.check_cluster_caller(owner_of(request))
    body = await parse_body(request, model)
    spec = EnvSpec.from_dict(body.spec)
    if isinstance(body, HostedEnvMake):
        return model_response(await make_env_op(svc, request, body.request, spec))
    return model_response(await make_vec_op(svc, request, body.request, spec))


@router.post(HOSTED_ENVS_PATH)
async def hosted_env(request: Request) -> Response:
    """Build one env from the admin's resolved spec."""
    return await _hosted(request, HostedEnvMake)


@router.post(HOSTED_VECS_PATH)
async def hosted_vec(request: Request) -> Response:
    """Build a vector env from the admin's resolved spec."""
    return await _hosted(request, HostedVecMake)

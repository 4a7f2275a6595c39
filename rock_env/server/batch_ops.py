"""Batched env calls: many envs' makes, resets or steps in one request (``/api/v1/batch/*``).

A client that drives thousands of single envs (``rock.amake(..., coalesce=True)``) sends what
they ask in one turn of its event loop as one request here. Every item gets its own answer or
error, in the order of the request; one env's failure never fails the others.

Resets and steps are grouped by the worker that hosts each env, and each group is one batched
call there (the embedded worker runs it inline); with one group and no lookup error the worker's
JSON is passed on untouched. Under auth, a batch sent straight to a worker has one env's grant as
its bearer and every item carries its own env's grant, which the worker checks item by item. Makes are placed one by one, exactly like single makes (quota,
placement, record), after the batch's env ids are resolved once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel
from pydantic_core import from_json, to_json

from rock_env.errors import RockEnvError, Unauthorized, WorkerLost
from rock_env.protocol import (
    BatchMakeRequest,
    BatchResetRequest,
    BatchStepRequest,
    EnvMakeRequest,
    error_body,
)
from rock_env.registry.spec import EnvSpec
from rock_env.server import env_ops
from rock_env.server.env_ops import BATCH_RESET, BATCH_STEP
from rock_env.server.hosts import Host, HostOp
from rock_env.server.objects import GRANT_OWNER, describe, new_id
from rock_env.server.placement import Placement
from rock_env.server.store import ObjectRecord

#: One item's answer: ``{"result": ..., "error": ...}``.
Item = dict[str, Any]


def _failed(exc: RockEnvError) -> Item:
    return {"result": None, "error": error_body(exc).model_dump(mode="json")}


def _lost(rec: ObjectRecord, exc: WorkerLost) -> Item:
    """A lost worker's error, naming the env it hit (as a single call's error does)."""
    return _failed(exc if rec.id in str(exc) else WorkerLost(f"{describe(rec)} is lost: {exc}"))


def _item_owner(svc: Placement, owner: str, grant: str | None) -> str:
    """Who an item acts as: a request made with a grant (straight to a worker) acts for each item with
    that item's own grant, checked here; any other request acts as its caller (item grants unused)."""
    if owner.startswith(GRANT_OWNER) and grant is not None:
        item_owner = svc.authenticate(grant)
        if not item_owner.startswith(GRANT_OWNER):
            raise Unauthorized("an item's grant must be an object grant, not an API token.")
        return item_owner
    return owner


async def _grouped(
    svc: Placement,
    owner: str,
    envs: list[tuple[str, str | None]],
    op: HostOp,
    sub_body: Callable[[list[int]], BaseModel],
) -> bytes:
    """Run ``op`` on every env of ``envs`` (``(env id, its grant)``) where it lives, one batched call
    per worker.

    ``sub_body(indices)`` is the request a worker gets for the items at ``indices``.
    """
    results: list[Item | None] = [None] * len(envs)
    records: list[ObjectRecord | None] = [None] * len(envs)
    groups: dict[str, tuple[Host, list[int]]] = {}
    failed = False
    for i, (env, grant) in enumerate(envs):
        try:
            rec = records[i] = svc.lookup(env, ("env",), _item_owner(svc, owner, grant))
            host = svc.host_of(rec)
        except RockEnvError as exc:
            results[i] = _failed(exc)
            failed = True
            continue
        groups.setdefault(host.worker_id, (host, []))[1].append(i)

    async def run(host: Host, indices: list[int], passthrough: bool) -> bytes | None:
        try:
            answer = await host.call(op, "", sub_body(indices))
        except WorkerLost as exc:
            for i in indices:
                results[i] = _lost(records[i], exc)  # type: ignore[arg-type]
            return None
        except RockEnvError as exc:
            for i in indices:
                results[i] = _failed(exc)
            return None
        if passthrough:
            return answer
        for i, item in zip(indices, from_json(answer)["results"], strict=True):
            results[i] = item
        return None

    if not failed and len(groups) == 1:
        host, indices = next(iter(groups.values()))
        answer = await run(host, indices, passthrough=True)
        if answer is not None:
            return answer
    else:
        await asyncio.gather(*(run(host, indices, passthrough=False) for host, indices in groups.values()))
    return to_json({"results": results})


async def batch_step(svc: Placement, owner: str, body: BatchStepRequest) -> bytes:
    """Step many envs (the JSON of a :class:`~rock_env.protocol.BatchStepResponse`)."""
    steps = body.steps
    return await _grouped(
        svc,
        owner,
        [(item.env, item.grant) for item in steps],
        BATCH_STEP,
        lambda indices: BatchStepRequest.model_construct(steps=[steps[i] for i in indices]),
    )


async def batch_reset(svc: Placement, owner: str, body: BatchResetRequest) -> bytes:
    """Reset many envs (the JSON of a :class:`~rock_env.protocol.BatchResetResponse`)."""
    resets = body.resets
    return await _grouped(
        svc,
        owner,
        [(item.env, item.grant) for item in resets],
        BATCH_RESET,
        lambda indices: BatchResetRequest.model_construct(resets=[resets[i] for i in indices]),
    )


async def batch_make(svc: Placement, owner: str, body: BatchMakeRequest) -> bytes:
    """Make many envs, each placed like a single make (the JSON of a :class:`~rock_env.protocol.BatchMakeResponse`)."""
    specs: dict[str, EnvSpec | RockEnvError] = {}
    for item in body.makes:
        if item.env_id not in specs:
            try:
                specs[item.env_id] = await env_ops.resolve_spec(svc, item.env_id)
            except RockEnvError as exc:
                specs[item.env_id] = exc

    async def make(item: EnvMakeRequest) -> Item:
        spec = specs[item.env_id]
        try:
            if isinstance(spec, RockEnvError):
                raise spec
            info = await env_ops.make_env(svc, owner, new_id("env"), item, spec)
        except RockEnvError as exc:
            return _failed(exc)
        return {"result": info.model_dump(mode="json"), "error": None}

    results = await asyncio.gather(*(make(item) for item in body.makes))
    return to_json({"results": results})


__all__ = ["batch_make", "batch_reset", "batch_step"]

"""The env hub of one admin: push, list and show env specs kept in its SQLite store.

A :class:`Hub` belongs to one :class:`~rock_env.server.service.Service` (the admin's; a worker
has no store and answers that the hub lives on the admin). Pushed specs are checked by
:mod:`rock_env.server.hub_validate` before they are stored; a version is immutable (the same
content again is accepted, other content is :class:`~rock_env.errors.HubVersionConflict`).

The hub also resolves ``hub:NAME-vN`` ids for this process's registry
(:func:`~rock_env.registry.hub_source.register_local_hub`), so that an env made on this server
from a hub id (``POST /api/v1/envs``, vector envs, every worker it is placed on) is built from
the stored spec exactly as a client that builds it locally does.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import weakref
from typing import TYPE_CHECKING

from rock_env.errors import Forbidden, HubError, HubSpecInvalid, HubSpecNotFound, HubVersionConflict, RockEnvError
from rock_env.protocol.hub import (
    HubEntry,
    HubEnvSummary,
    HubList,
    HubResolved,
    HubSpec,
    HubVersion,
    hub_env_id,
)
from rock_env.registry.hub_source import register_local_hub, resolved_spec, unregister_local_hub
from rock_env.registry.resolver import Registry
from rock_env.registry.spec import EnvSpec
from rock_env.server.hub_validate import parse_spec, validate_spec
from rock_env.server.store import HubRecord, Store

if TYPE_CHECKING:
    from rock_env.server.service import Service

logger = logging.getLogger(__name__)


def canonical(spec: HubSpec) -> str:
    """The canonical JSON of a spec (sorted keys, defaults filled in): what immutability compares."""
    return json.dumps(spec.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))


def digest_of(text: str) -> str:
    """``sha256:<hex>`` of a canonical spec."""
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


class Hub:
    """The env hub of one service (see the module docstring). Methods block: call them in a thread."""

    def __init__(self, service: Service) -> None:
        self._service = weakref.ref(service)
        self._lock = threading.Lock()
        self._resolved: dict[tuple[str, int], HubResolved] = {}

    # -- plumbing ------------------------------------------------------------------------

    def _svc(self) -> Service:
        svc = self._service()
        if svc is None:
            raise HubError("this server is shutting down; retry on a running admin.")
        return svc

    def store(self) -> Store:
        """The admin's store; :class:`HubError` on a worker or before startup."""
        svc = self._svc()
        if svc.role != "admin":
            raise HubError("the env hub lives on the admin, not on a worker: send hub requests to the admin's URL.")
        if svc.store is None:
            raise HubError("the admin is still starting; retry in a moment.")
        return svc.store

    def register(self) -> None:
        """Resolve ``hub:`` ids in this process from this hub (an admin calls it once)."""
        register_local_hub(id(self), self.lookup)

    # -- push ----------------------------------------------------------------------------

    def check_pusher(self, owner: str) -> None:
        """Only the admin's token (the first configured one) may push when the server has tokens."""
        tokens = self._svc().settings.all_tokens()
        if tokens and owner != tokens[0].name:
            raise Forbidden(
                f"token {owner!r} may not push to the env hub: pushing needs the admin's token ({tokens[0].name!r}, "
                "the first of server.tokens, else server.token). Reading (rock-env hub list/show) works with any token."
            )

    def push(self, raw: object, owner: str) -> tuple[HubVersion, bool]:
        """Check and store one spec version: (the stored version, whether it is new)."""
        self.check_pusher(owner)
        store = self.store()
        spec = parse_spec(raw)
        text = canonical(spec)
        digest = digest_of(text)
        existing = store.hub_version(spec.name, spec.version)
        if existing is None:
            validated = validate_spec(spec.model_dump(mode="json", exclude_unset=True), self._svc().policy, _registry())
            record = HubRecord(spec.name, spec.version, text, digest, time.time(), owner)
            existing, created = store.add_hub_version(record)
            if created:
                with self._lock:
                    self._resolved[(spec.name, spec.version)] = validated.resolved
                logger.info("hub: %s pushed by %s", spec.env_id, owner)
                return self._version_of(existing), True
        if existing.digest != digest:
            latest = max(r.version for r in store.hub_versions(spec.name))
            raise HubVersionConflict(
                f"hub spec {spec.name!r} version {spec.version} exists already with other content (pushed by "
                f"{existing.pushed_by!r} at {_when(existing.pushed_at)}; digest {existing.digest}). Versions are "
                f"immutable: push your change as version {latest + 1}."
            )
        return self._version_of(existing), False

    # -- reading -------------------------------------------------------------------------

    def list(self, tag: str | None = None, query: str | None = None) -> HubList:
        """One summary per name (its latest version), sorted by name; ``tag``/``query`` filter."""
        by_name: dict[str, list[HubRecord]] = {}
        for rec in self.store().hub_versions():
            by_name.setdefault(rec.name, []).append(rec)
        out = []
        for name in sorted(by_name):
            records = by_name[name]
            latest = records[-1]
            spec = HubSpec.model_validate_json(latest.spec)
            if tag is not None and tag not in spec.tags:
                continue
            if query and query.lower() not in f"{name}\n{spec.description}".lower():
                continue
            out.append(
                HubEnvSummary(
                    name=name,
                    latest=latest.version,
                    versions=[r.version for r in records],
                    description=spec.description,
                    tags=spec.tags,
                    env=spec.env,
                    entry_point=spec.entry_point,
                    local=spec.local,
                    pushed_at=latest.pushed_at,
                )
            )
        return HubList(envs=out)

    def entry(self, name: str) -> HubEntry:
        """Every version of ``name``, newest first; :class:`HubSpecNotFound` if there is none."""
        records = self.store().hub_versions(name)
        if not records:
            raise self._not_found(name, None)
        return HubEntry(name=name, versions=[self._version_of(r) for r in reversed(records)])

    def version(self, name: str, version: int) -> HubVersion:
        """One version; :class:`HubSpecNotFound` naming the versions there are."""
        record = self.store().hub_version(name, version)
        if record is None:
            raise self._not_found(name, version)
        return self._version_of(record)

    def lookup(self, name: str, version: int) -> EnvSpec | None:
        """The registry spec of ``hub:NAME-vN`` from this hub (``None``: this hub is not serving)."""
        svc = self._service()
        if svc is None:
            unregister_local_hub(id(self))
            return None
        if svc.role != "admin" or svc.store is None:
            return None
        try:
            found = self.version(name, version)
        except HubError:
            return None
        except Exception as exc:  # e.g. the store was closed at shutdown
            if isinstance(exc, RockEnvError):
                raise
            logger.debug("hub lookup of %s v%s skipped: %s", name, version, exc)
            return None
        if found.resolved is None:
            raise HubSpecInvalid(f"{found.id!r} cannot be built on this server now: {found.problem}")
        return resolved_spec(found.id, found.resolved, found.spec.description)

    # -- internals -----------------------------------------------------------------------

    def _version_of(self, record: HubRecord) -> HubVersion:
        spec = HubSpec.model_validate_json(record.spec)
        resolved, problem = self._resolve(spec)
        return HubVersion(
            id=spec.env_id,
            name=record.name,
            version=record.version,
            spec=spec,
            digest=record.digest,
            pushed_at=record.pushed_at,
            pushed_by=record.pushed_by,
            resolved=resolved,
            problem=problem,
        )

    def _resolve(self, spec: HubSpec) -> tuple[HubResolved | None, str | None]:
        """What this server builds for ``spec`` now (checked again: packages and policy may have changed)."""
        key = (spec.name, spec.version)
        with self._lock:
            cached = self._resolved.get(key)
        if cached is not None:
            return cached, None
        try:
            resolved = validate_spec(spec.model_dump(mode="json"), self._svc().policy, _registry()).resolved
        except RockEnvError as exc:
            return None, f"{type(exc).__name__}: {exc.message or exc}"
        with self._lock:
            self._resolved[key] = resolved
        return resolved, None

    def _not_found(self, name: str, version: int | None) -> HubSpecNotFound:
        store = self.store()
        versions = [r.version for r in store.hub_versions(name)]
        if versions:
            return HubSpecNotFound(
                f"no version {version} of hub spec {name!r} (id {hub_env_id(name, version or 0)!r}); its versions: "
                f"{versions}. Use one of them, or push this version."
            )
        import difflib

        names = sorted({r.name for r in store.hub_versions()})
        close = difflib.get_close_matches(name, names, n=3)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        return HubSpecNotFound(
            f"no hub spec named {name!r} on this server.{hint} rock-env hub list shows them; "
            "rock-env hub push SPEC.yaml adds one."
        )


def _registry() -> Registry:
    from rock_env.registry import registry

    return registry


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))


__all__ = ["Hub", "canonical", "digest_of"]

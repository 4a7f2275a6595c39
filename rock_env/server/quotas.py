"""Who is asking and how much they may hold: tokens, the cluster caller, per-token quotas."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
from collections.abc import Iterator

from rock_env.errors import Forbidden, QuotaExceeded, Unauthorized
from rock_env.server.objects import GRANT_OWNER, Kind, ServiceState
from rock_env.server.settings import Limits

ANONYMOUS = "anonymous"
#: How an object grant starts, and the owner name a worker gives its bearer (``grant:<object id>``).
GRANT_PREFIX = "rgr1."
#: Quota field and noun of each kind.
_QUOTA = {
    "env": ("max_envs", "envs"),
    "vec": ("max_vec_envs", "vector sub-envs"),
    "sandbox": ("max_sandboxes", "sandboxes"),
}


class Quotas(ServiceState):
    """Authentication and quotas of one service."""

    #: Quota held by creations in progress: (owner, kind) -> [size, vector workers].
    _held: dict[tuple[str, str], list[int]]

    @property
    def auth_enabled(self) -> bool:
        """Whether requests must carry a token."""
        return bool(self._tokens)

    def grant_for(self, obj_id: str) -> str | None:
        """The bearer token a worker accepts for ``obj_id`` only (the direct data plane); ``None``
        without auth. An HMAC of the id under the cluster token, which the admin and its workers share,
        so a worker checks it without asking the admin and the client never sees the cluster token."""
        key = self.cluster_token
        if key is None:
            return None
        digest = hmac.new(key.encode(), f"rock-env-grant:{obj_id}".encode(), hashlib.sha256).hexdigest()
        return f"{GRANT_PREFIX}{obj_id}.{digest}"

    def _granted(self, presented: str) -> str:
        """The owner name of a valid grant (``grant:<id>``: that object only); raise Unauthorized."""
        obj_id, _, _digest = presented[len(GRANT_PREFIX) :].rpartition(".")
        expected = self.grant_for(obj_id) if obj_id else None
        if self.role != "worker" or expected is None or not hmac.compare_digest(presented.encode(), expected.encode()):
            raise Unauthorized("the object grant is not valid here: use the API token with the admin's URL.")
        return f"{GRANT_OWNER}{obj_id}"

    def authenticate(self, presented: str | None) -> str:
        """The owner name for a presented token (constant-time comparison); raise Unauthorized.

        A worker also accepts an object grant (see :meth:`grant_for`); its owner name ``grant:<id>``
        reaches that object only (:meth:`~rock_env.server.objects.Objects.lookup`).
        """
        if not self._tokens:
            return ANONYMOUS
        if not presented:
            raise Unauthorized(
                "this server needs an API token: send 'Authorization: Bearer <token>' "
                "(clients read it from token=... or $ROCK_ENV_TOKEN)."
            )
        if presented.startswith(GRANT_PREFIX):
            return self._granted(presented)
        owner: str | None = None
        given = presented.encode()
        for spec in self._tokens:
            if hmac.compare_digest(given, spec.token.encode()):
                owner = spec.name
        if owner is None:
            raise Unauthorized("the API token is wrong: check token=... or $ROCK_ENV_TOKEN.")
        return owner

    @property
    def cluster_token(self) -> str | None:
        """The token the admin and its workers use with each other (the first configured one)."""
        return self._tokens[0].token if self._tokens else None

    def check_cluster_caller(self, owner: str) -> None:
        """Only the cluster token may register workers and send their heartbeats (Forbidden otherwise).

        The cluster token is the first configured token (``server.tokens[0]``, else ``server.token``):
        the admin sends it to its workers and they send it back. Another client's token must not
        make the admin place everyone's envs and sandboxes on a "worker" that client runs.
        """
        if self._tokens and owner != self._tokens[0].name:
            raise Forbidden(
                f"token {owner!r} may not register workers: only the cluster token ({self._tokens[0].name!r}, the "
                "first of server.tokens, else server.token) may. Start workers with that token (worker.token=... "
                "or $ROCK_ENV_TOKEN)."
            )

    def limits_of(self, owner: str) -> Limits:
        """Quotas of ``owner``: the global ``limits``, with the fields its token's own limits set."""
        for spec in self._tokens:
            if spec.name == owner and spec.limits is not None:
                return self.settings.limits.model_copy(update=spec.limits.model_dump(exclude_unset=True))
        return self.settings.limits

    def _usage(self, owner: str, kind: Kind) -> tuple[int, int]:
        """What ``owner`` holds of ``kind`` (live objects and creations in progress): (size, vector workers)."""
        size, workers = self.records.by_owner.get((owner, kind), (0, 0))
        held = self._held.get((owner, kind))
        if held is not None:
            size += held[0]
            workers += held[1]
        return size, workers

    def check_quota(self, owner: str, kind: Kind, size: int, workers: int = 0) -> None:
        """Raise QuotaExceeded if ``owner`` may not create ``size`` more objects of ``kind``
        (and ``workers`` more vector worker processes)."""
        if self.role != "admin":
            return
        limits = self.limits_of(owner)
        used, used_workers = self._usage(owner, kind)
        field, what = _QUOTA[kind]
        checks = [(field, what, getattr(limits, field), used, size)]
        if kind == "vec" and workers:
            checks.append(("max_vec_workers", "vector worker processes", limits.max_vec_workers, used_workers, workers))
        for name, noun, limit, have, more in checks:
            if limit is not None and have + more > limit:
                close = "sandbox.stop()" if kind == "sandbox" else "env.close()"
                raise QuotaExceeded(
                    f"quota {name} exceeded: token {owner!r} may hold at most {limit} {noun}; it holds {have} and "
                    f"asked for {more} more. Close some ({close}) or raise the quota: limits.{name}=N for every "
                    f"token, or server.tokens[].limits.{name} for one (null: unlimited)."
                )

    @contextlib.contextmanager
    def hold_quota(self, owner: str, kind: Kind, size: int, workers: int = 0) -> Iterator[None]:
        """Check the quota and count ``size`` (and ``workers``) as used while a creation is in progress.

        Concurrent creations of one owner therefore cannot together pass a quota that each passes alone.
        """
        self.check_quota(owner, kind, size, workers)
        key = (owner, kind)
        held = self._held.setdefault(key, [0, 0])
        held[0] += size
        held[1] += workers
        try:
            yield
        finally:
            held[0] -= size
            held[1] -= workers
            if held == [0, 0]:
                self._held.pop(key, None)

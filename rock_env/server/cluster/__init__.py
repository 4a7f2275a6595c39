"""The admin's Ray cluster backend (``rock-env admin start cluster=ray``).

The admin connects to Ray and keeps exactly one long-lived rock-env worker actor per alive
Ray node (not one actor per env). Each actor runs the ordinary worker in-process: it serves
``/api/v1`` on the node's IP and registers with the admin over HTTP, so the admin's usual
placement puts envs and sandboxes on it. A dead node or actor is noticed by the placement
loop and its worker is marked lost at once: clients get :class:`~rock_env.errors.WorkerLost`
naming their env or sandbox, and a fresh actor takes the node's place.

Modules: :mod:`.settings` (the ``cluster`` and ``ray_workers`` config groups),
:mod:`.placement` (the Ray-free placement logic), :mod:`.actor` (the node actor that runs a
worker), :mod:`.ray_backend` (the Ray calls) and :mod:`.hook` (wiring into the admin's service:
``attach_cluster``; it imports Ray only when called). Joining Ray and reaping a private head's
leftovers live in :mod:`rock_env.cluster`, shared with ``rock-env rollout cluster=ray``.
"""

from __future__ import annotations

from rock_env.server.cluster.settings import RayClusterSettings, cluster_settings

__all__ = ["RayClusterSettings", "cluster_settings"]

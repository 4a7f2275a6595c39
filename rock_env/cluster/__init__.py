"""Ray connection and leftover reaping, shared by the admin's Ray backend and ``rock-env rollout``.

Both the server (:mod:`rock_env.server.cluster`) and the rollouts (:mod:`rock_env.rollout.ray_runner`)
import from here; nothing here imports either of them, nor Ray at import time.

Modules: :mod:`.ray_connect` (joining Ray: ``auto``, ``local`` or ``HOST:PORT``), :mod:`.leftovers`
(recording and reaping a private Ray head's processes) and :mod:`.net` (loopback addresses).
"""

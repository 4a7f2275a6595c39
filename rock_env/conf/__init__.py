"""Hydra configs shipped inside the package (config path ``pkg://rock_env.conf``).

Groups: ``env/``, ``backend/``, ``runtime/``, ``policy/``, ``cluster/`` (owned by the config
package) and ``server/``, ``worker/``, ``limits/``, ``ray_workers/`` (owned by the server). The primary config of
``rock-env rollout`` is ``rollout.yaml``. The top-level ``conf/`` directory of a source checkout
is a symlink to this directory.
"""

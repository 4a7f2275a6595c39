"""``rock-env admin start [OVERRIDES...]``: the admin server with its embedded worker.

    rock-env admin start                                # 127.0.0.1:8080, state in ~/.rock-env/admin
    rock-env admin start server.port=9000 runtime=docker limits=small
    ROCK_ENV_TOKEN=... rock-env admin start server=public

Overrides are Hydra's (groups ``server``, ``worker``, ``limits``, ``runtime``, ``cluster``,
``ray_workers``); ``cluster=ray`` places one worker actor per Ray node; ``workers=N`` runs N
worker processes on this host (``workers=auto``, the default: one per core) that register with
this admin and serve their envs directly to clients (the admin then hosts nothing itself);
``workers=0`` keeps everything in the admin's process (its embedded worker); ``--cfg`` prints
the composed config and exits.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from rock_env.server.config import admin_settings, compose
from rock_env.server.logs import configure_logging

_USAGE = """usage: rock-env admin start [--cfg] [KEY=VALUE ...]

Run the admin server (FastAPI + uvicorn) and one worker process per core.

examples:
  rock-env admin start                                      # workers=auto: one worker process per core
  rock-env admin start workers=0                            # everything in this process (embedded worker)
  rock-env admin start server.port=9000 runtime=docker
  rock-env admin start server=public server.token=$(openssl rand -hex 16) limits=small
  rock-env admin start cluster=ray cluster.address=local    # one worker actor per Ray node
  rock-env admin start workers=2                            # two worker processes on this host
"""


def worker_count(value: Any) -> int:
    """``workers=`` as a number: ``auto`` (the default) is one per core, 0 none (the embedded worker)."""
    if value in (None, "", 0, "0"):
        return 0
    if value == "auto":
        return os.cpu_count() or 1
    try:
        count = int(value)
    except (TypeError, ValueError):
        count = -1
    if count < 0:
        from rock_env.errors import ConfigError

        raise ConfigError(f"workers={value!r} is not a number of worker processes: use workers=N or workers=auto.")
    return count


def spawn_workers(
    count: int, admin_url: str, host: str, worker_cfg: dict[str, Any], token: str | None
) -> list[subprocess.Popen[bytes]]:
    """Start ``count`` ``rock-env worker start`` processes that join the admin at ``admin_url``
    (with the cluster ``token``, passed in their environment, never on a command line)."""
    env = dict(os.environ)
    if token:
        env["ROCK_ENV_TOKEN"] = token
    procs = []
    for i in range(count):
        args = [sys.executable, "-m", "rock_env.cli", "worker", "start", "--admin", admin_url]
        args += [f"worker.id=local-{os.getpid()}-{i}", f"worker.host={host}", "worker.port=0"]
        for key in ("slots", "heartbeat_interval", "allow_local_runtime", "log_level", "log_format"):
            if worker_cfg.get(key) is not None:
                args.append(
                    f"worker.{key}={str(worker_cfg[key]).lower() if isinstance(worker_cfg[key], bool) else worker_cfg[key]}"
                )
        procs.append(subprocess.Popen(args, env=env, start_new_session=True))
    return procs


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def stop_workers(procs: list[subprocess.Popen[bytes]], timeout: float = 20.0) -> None:
    """Stop the worker processes this admin started (by PID), killing those that do not exit."""
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait(5)


def main(argv: list[str]) -> int:
    """Entry point of ``rock-env admin``."""
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(_USAGE)
        return 0 if argv else 2
    if argv[0] != "start":
        print(f"rock-env admin: unknown subcommand {argv[0]!r}\n\n{_USAGE}", file=sys.stderr)
        return 2
    rest = argv[1:]
    show = "--cfg" in rest
    overrides = [a for a in rest if a != "--cfg"]
    cfg = compose("serve_admin", overrides)
    if show:
        from omegaconf import OmegaConf

        print(OmegaConf.to_yaml(cfg))
        return 0
    settings, extra = admin_settings(cfg)
    settings.check_bind()
    from rock_env.server.cluster import cluster_settings

    cluster = cluster_settings(cfg)  # cluster=ray: Ray worker actors replace the embedded worker
    workers_cfg = cfg.get("workers")
    # with cluster=ray the Ray nodes are the workers: local worker processes only when asked for by number
    workers = 0 if cluster is not None and workers_cfg == "auto" else worker_count(workers_cfg)
    if cluster is not None or workers:
        settings = settings.model_copy(update={"embedded_worker": False})
    configure_logging(settings.log_level, settings.log_format)
    from rock_env.server.app import create_app
    from rock_env.server.gc_policy import GcPolicy
    from rock_env.server.runner import bind_socket, serve_on

    sock = bind_socket(settings.host, settings.port)
    port = sock.getsockname()[1]
    if extra.get("port_file"):
        Path(str(extra["port_file"])).write_text(str(port))
    from rock_env.server.policy import ServerPolicy

    ServerPolicy.from_settings(settings).apply_to_process()
    app = create_app(settings, role="admin")
    app.state.service.gc_policy = GcPolicy()  # this process is the server's own: tune its collector
    if cluster is not None:
        from rock_env.server.cluster.hook import attach_cluster

        attach_cluster(app.state.service, cluster, settings.host, port)
    print(f"rock-env admin listening on http://{settings.host}:{port} (state in {settings.data_path()})", flush=True)
    tokens = settings.all_tokens()
    worker_cfg = dict(cfg.get("worker") or {})
    admin_url = f"http://{settings.host}:{port}"
    procs = spawn_workers(workers, admin_url, settings.host, worker_cfg, tokens[0].token if tokens else None)
    # creations wait for them to register at startup (as long as one of them runs)
    app.state.service.local_workers = workers
    app.state.service.local_workers_starting = lambda: any(p.poll() is None for p in procs)
    if procs:
        # uvicorn re-raises the SIGTERM/SIGINT it caught once it has shut down: exit through `finally`
        signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        serve_on(app, sock, settings.log_level, settings.log_format == "json")
    finally:
        stop_workers(procs)
    return 0

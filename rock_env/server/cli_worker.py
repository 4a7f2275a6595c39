"""``rock-env worker start --admin URL [OVERRIDES...]``: a worker that joins an admin.

The worker serves the same ``/api/v1`` routes for the objects the admin places on it,
registers with the admin, and heartbeats every ``worker.heartbeat_interval`` seconds.
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path

from rock_env.server.config import compose, worker_settings
from rock_env.server.logs import configure_logging

_USAGE = """usage: rock-env worker start --admin URL [--cfg] [KEY=VALUE ...]

Run a worker that registers with the admin at URL and hosts envs and sandboxes.

examples:
  rock-env worker start --admin http://127.0.0.1:8080
  rock-env worker start --admin http://10.0.0.1:8080 worker.host=0.0.0.0 worker.port=8081 worker.slots=512
"""


def main(argv: list[str]) -> int:
    """Entry point of ``rock-env worker``."""
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(_USAGE)
        return 0 if argv else 2
    if argv[0] != "start":
        print(f"rock-env worker: unknown subcommand {argv[0]!r}\n\n{_USAGE}", file=sys.stderr)
        return 2
    args = argv[1:]
    overrides: list[str] = []
    admin: str | None = None
    port_file: str | None = None
    show = False
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--admin" and i + 1 < len(args):
            admin = args[i + 1]
            i += 2
            continue
        if arg.startswith("--admin="):
            admin = arg.split("=", 1)[1]
        elif arg == "--port-file" and i + 1 < len(args):
            port_file = args[i + 1]
            i += 2
            continue
        elif arg == "--cfg":
            show = True
        else:
            overrides.append(arg)
        i += 1
    if admin:
        overrides.append(f"worker.admin_url={admin}")
    cfg = compose("serve_worker", overrides)
    if show:
        from omegaconf import OmegaConf

        print(OmegaConf.to_yaml(cfg))
        return 0
    settings, worker_cfg = worker_settings(cfg)
    settings.check_bind()
    configure_logging(settings.log_level, settings.log_format)
    from rock_env.server.app import create_app
    from rock_env.server.gc_policy import GcPolicy
    from rock_env.server.heartbeat import run_heartbeat
    from rock_env.server.runner import bind_socket, serve_on

    sock = bind_socket(settings.host, settings.port)
    port = sock.getsockname()[1]
    if not worker_cfg.get("id"):
        settings = settings.model_copy(update={"worker_id": f"{socket.gethostname()}-{port}"})
    host = settings.host if settings.host not in ("0.0.0.0", "::") else socket.gethostname()
    advertise = worker_cfg.get("advertise_url") or f"http://{host}:{port}"
    if port_file:
        Path(port_file).write_text(str(port))
    from rock_env.server.policy import ServerPolicy

    ServerPolicy.from_settings(settings).apply_to_process()
    app = create_app(settings, role="worker")
    app.state.service.gc_policy = GcPolicy()  # this process is the server's own: tune its collector
    service = app.state.service
    token = settings.all_tokens()[0].token if settings.all_tokens() else None

    service.background.append(lambda: run_heartbeat(service, str(worker_cfg["admin_url"]), advertise, token))

    print(f"rock-env worker {settings.worker_id} listening on {advertise}, admin {worker_cfg['admin_url']}", flush=True)
    serve_on(app, sock, settings.log_level, settings.log_format == "json")
    return 0

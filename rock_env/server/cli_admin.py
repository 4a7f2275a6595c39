"""``rock-env admin start [OVERRIDES...]``: the admin server with its embedded worker.

    rock-env admin start                                # 127.0.0.1:8080, state in ~/.rock-env/admin
    rock-env admin start server.port=9000 runtime=docker limits=small
    ROCK_ENV_TOKEN=... rock-env admin start server=public

Overrides are Hydra's (groups ``server``, ``worker``, ``limits``, ``runtime``, ``cluster``,
``ray_workers``); ``cluster=ray`` places one worker actor per Ray node; ``--cfg``
prints the composed config and exits.
"""

from __future__ import annotations

import sys
from pathlib import Path

from rock_env.server.config import admin_settings, compose
from rock_env.server.logs import configure_logging

_USAGE = """usage: rock-env admin start [--cfg] [KEY=VALUE ...]

Run the admin server (FastAPI + uvicorn) with an embedded worker.

examples:
  rock-env admin start
  rock-env admin start server.port=9000 runtime=docker
  rock-env admin start server=public server.token=$(openssl rand -hex 16) limits=small
  rock-env admin start cluster=ray cluster.address=local    # one worker actor per Ray node
"""


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
    if cluster is not None:
        settings = settings.model_copy(update={"embedded_worker": False})
    configure_logging(settings.log_level, settings.log_format)
    from rock_env.server.app import create_app
    from rock_env.server.runner import bind_socket, serve_on

    sock = bind_socket(settings.host, settings.port)
    port = sock.getsockname()[1]
    if extra.get("port_file"):
        Path(str(extra["port_file"])).write_text(str(port))
    from rock_env.server.policy import ServerPolicy

    ServerPolicy.from_settings(settings).apply_to_process()
    app = create_app(settings, role="admin")
    if cluster is not None:
        from rock_env.server.cluster.hook import attach_cluster

        attach_cluster(app.state.service, cluster, settings.host, port)
    print(f"rock-env admin listening on http://{settings.host}:{port} (state in {settings.data_path()})", flush=True)
    serve_on(app, sock, settings.log_level, settings.log_format == "json")
    return 0

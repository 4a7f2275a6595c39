"""The ``rock-env`` command.

Each command group lives in the package it belongs to and owns its own argument parsing
(some groups take Hydra overrides such as ``server.port=9000``). This module only
dispatches: ``rock-env GROUP ARGS...`` calls ``main(ARGS) -> int`` of the group's module.
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Sequence

from rock_env.errors import RockEnvError

#: group name -> (module with a ``main(argv) -> int``, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "envs": ("rock_env.registry.cli", "list and show registered envs"),
    "play": ("rock_env.play", "play an env in the terminal"),
    "rollout": ("rock_env.rollout.cli", "run episodes with a policy (Hydra config, -m for sweeps)"),
    "sandbox": ("rock_env.sandbox.cli", "list and reap sandboxes"),
    "image": ("rock_env.sandbox.image_cli", "build local base images (no registry needed)"),
    "admin": ("rock_env.server.cli_admin", "run the admin server (embedded worker included)"),
    "worker": ("rock_env.server.cli_worker", "run a worker that joins an admin"),
    "hub": ("rock_env.hub_cli", "push, list and show env specs in the admin's env hub"),
}


def _usage() -> str:
    lines = ["usage: rock-env COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<10} {help_text}" for name, (_, help_text) in COMMANDS.items()]
    lines += ["", "Run 'rock-env COMMAND --help' for a command's options."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rock-env`` console script."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in {"-h", "--help", "help"}:
        print(_usage())
        return 0
    if args[0] in {"-V", "--version"}:
        from importlib.metadata import version

        print(f"rock-env {version('rock-env')}")
        return 0
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"rock-env: unknown command {name!r}.\n\n{_usage()}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    module = importlib.import_module(COMMANDS[name][0])
    try:
        return int(module.main(rest) or 0)
    except RockEnvError as exc:
        print(f"rock-env {name}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())

"""``rock-env hub``: push, list and show env specs in the admin's env hub.

The server is ``--url`` (else ``$ROCK_ENV_URL``, else ``http://127.0.0.1:8080``) and the token
``--token`` (else ``$ROCK_ENV_TOKEN``), as for every other client. A spec file is YAML::

    name: sokoban-tiny            # the env id is hub:sokoban-tiny-v1
    version: 1                    # an integer; immutable once pushed
    description: Sokoban on a 6x6 board with one box
    tags: [game, easy]
    env: game:Sokoban-v0-easy     # or entry_point: mypkg.envs:MyEnv (installed on the server)
    kwargs: {num_boxes: 1}
    # local: true                 # clients may build it in their own process
    # sandbox envs: image, tasks, dataset, harness, limits: {memory: 1g, pids: 256}
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rock_env.errors import HubSpecInvalid
from rock_env.protocol.hub import HubEntry, HubList, HubPushRequest, HubPushResponse, HubVersion

#: Largest spec file read (a spec with inline tasks can be big, but not this big).
MAX_SPEC_BYTES = 16 << 20


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``rock-env hub``."""
    parser = argparse.ArgumentParser(
        prog="rock-env hub",
        description="Push, list and show env specs in the admin's env hub (ids hub:NAME-vN).",
        epilog="A spec file is YAML, e.g.:\n" + __doc__.split("::", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", help="the admin's URL (default: $ROCK_ENV_URL, else http://127.0.0.1:8080)")
    common.add_argument("--token", help="API token (default: $ROCK_ENV_TOKEN)")
    common.add_argument("--json", action="store_true", help="print the server's JSON answer")
    sub = parser.add_subparsers(dest="action", required=True)
    push = sub.add_parser("push", parents=[common], help="push a spec version (YAML file, '-' for stdin)")
    push.add_argument("spec_file")
    listing = sub.add_parser("list", parents=[common], help="list the hub's envs (latest version of each)")
    listing.add_argument("--tag", help="only specs with this tag")
    listing.add_argument("--query", "-q", help="only names or descriptions containing this text")
    show = sub.add_parser("show", parents=[common], help="show a hub env's versions")
    show.add_argument("name", help="the hub name, or an id hub:NAME-vN")
    show.add_argument("--version", "-v", type=int, help="only this version")
    return parser


def read_spec(path: str) -> dict[str, Any]:
    """The mapping in a YAML spec file (``-``: standard input); :class:`HubSpecInvalid` if it is not one."""
    import yaml

    try:
        text = sys.stdin.read(MAX_SPEC_BYTES + 1) if path == "-" else _read(Path(path))
    except OSError as exc:
        raise HubSpecInvalid(f"cannot read the spec file {path!r}: {exc.strerror or exc}.") from None
    if len(text) > MAX_SPEC_BYTES:
        raise HubSpecInvalid(f"the spec file {path!r} is larger than {MAX_SPEC_BYTES} bytes.")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise HubSpecInvalid(f"the spec file {path!r} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise HubSpecInvalid(
            f"the spec file {path!r} must hold a mapping (name, version, env or entry_point, ...), "
            f"got {type(data).__name__}."
        )
    try:
        json.dumps(data)
    except (TypeError, ValueError) as exc:
        raise HubSpecInvalid(
            f"the spec file {path!r} has values that are not plain JSON data ({exc}); quote dates and similar values."
        ) from None
    return data


def _read(path: Path) -> str:
    with path.open(encoding="utf-8") as f:
        return f.read(MAX_SPEC_BYTES + 1)


def main(argv: Sequence[str]) -> int:
    """Run ``rock-env hub ...``."""
    from rock_env.remote.client import ApiClient

    args = build_parser().parse_args(list(argv))
    out = sys.stdout
    if args.action == "push":
        spec = read_spec(args.spec_file)
        with ApiClient(args.url, args.token, timeout=120.0) as client:
            answer = client.call("POST", "/api/v1/hub", HubPushResponse, body=HubPushRequest(spec=spec))
        if args.json:
            out.write(answer.model_dump_json(indent=2) + "\n")
        else:
            state = "pushed" if answer.created else "unchanged (this version exists with the same content)"
            out.write(f"{answer.version.id}: {state}\n{answer.version.digest}\n")
        return 0
    if args.action == "list":
        params = {k: v for k, v in (("tag", args.tag), ("q", args.query)) if v}
        with ApiClient(args.url, args.token) as client:
            listing = client.call("GET", "/api/v1/hub", HubList, params=params)
        if args.json:
            out.write(listing.model_dump_json(indent=2) + "\n")
            return 0
        for env in listing.envs:
            target = env.env or env.entry_point
            tags = f" [{', '.join(env.tags)}]" if env.tags else ""
            env_id = f"hub:{env.name}-v{env.latest}"
            out.write(f"{env_id:<32} {target:<36} {env.description}{tags}\n")
        if not listing.envs:
            sys.stderr.write(
                "the hub has no envs" + (" that match" if params else "") + "; push one: rock-env hub push\n"
            )
        return 0
    name, version = _name_and_version(args.name, args.version)
    with ApiClient(args.url, args.token) as client:
        if version is not None:
            versions = [client.call("GET", f"/api/v1/hub/{name}/versions/{version}", HubVersion)]
        else:
            versions = client.call("GET", f"/api/v1/hub/{name}", HubEntry).versions
    if args.json:
        model: HubVersion | HubEntry = versions[0] if version is not None else HubEntry(name=name, versions=versions)
        out.write(model.model_dump_json(indent=2) + "\n")
        return 0
    out.write("\n\n".join(describe(v) for v in versions) + "\n")
    return 0


def _name_and_version(text: str, version: int | None) -> tuple[str, int | None]:
    """``NAME`` or ``hub:NAME-vN`` (then the id's version, unless ``--version`` says otherwise)."""
    if text.startswith("hub:"):
        from rock_env.registry.hub_source import split_hub_id

        name, from_id = split_hub_id(text)
        return name, version if version is not None else from_id
    return text, version


def describe(version: HubVersion) -> str:
    """A multi-line description of one version."""
    spec = version.spec
    lines = [
        f"id:           {version.id}",
        f"description:  {spec.description}",
        f"tags:         {', '.join(spec.tags)}",
        f"{'env:' if spec.env else 'entry_point:':<14}{spec.env or spec.entry_point}",
        f"kwargs:       {json.dumps(spec.kwargs)}",
        f"runs:         {'on the client or the server (local: true)' if spec.local else 'on the server'}",
    ]
    for key in ("image", "tasks", "dataset", "harness", "max_episode_steps"):
        value = getattr(spec, key)
        if value is not None:
            lines.append(f"{key + ':':<14}{json.dumps(value)}")
    if spec.limits is not None:
        lines.append(f"limits:       {json.dumps(spec.limits.model_dump(exclude_none=True))}")
    pushed = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(version.pushed_at))
    lines.append(f"pushed:       {pushed} by {version.pushed_by}")
    lines.append(f"digest:       {version.digest}")
    if version.resolved is not None:
        lines.append(f"builds:       {version.resolved.entry_point} {json.dumps(version.resolved.kwargs)}")
    else:
        lines.append(f"problem:      {version.problem}")
    return "\n".join(lines)


__all__ = ["build_parser", "describe", "main", "read_spec"]

"""``rock-env sandbox list|gc``: list recorded sandboxes and reap what crashed owners left behind."""

from __future__ import annotations

import argparse
import time

from rock_env.sandbox.gc import collect, list_sandboxes
from rock_env.sandbox.state import state_root


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rock-env sandbox", description="List and reap sandboxes.")
    sub = parser.add_subparsers(dest="command", required=True)
    listing = sub.add_parser("list", help="list the sandboxes recorded under the state dir")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    gc = sub.add_parser(
        "gc", help="reap sandboxes whose owner died or whose ttl passed (processes, cgroups, mounts, containers)"
    )
    gc.add_argument("--dry-run", action="store_true", help="only say what would be reaped")
    gc.add_argument("--force", action="store_true", help="reap every sandbox, even ones whose owner still runs")
    return parser


def main(argv: list[str]) -> int:
    """Entry point of ``rock-env sandbox``."""
    args = _parser().parse_args(argv)
    if args.command == "list":
        infos = list_sandboxes()
        if args.json:
            for info in infos:
                print(info.model_dump_json(exclude={"config"}))
        elif not infos:
            print(f"no sandboxes recorded under {state_root()}")
        else:
            print(f"{'ID':<16} {'RUNTIME':<10} {'STATUS':<8} {'AGE':>8} {'OWNER':>8}  IMAGE")
            now = time.time()
            for info in infos:
                age = f"{now - info.created_at:.0f}s"
                owner = info.owner_pid or "-"
                print(f"{info.id:<16} {info.runtime:<10} {info.status:<8} {age:>8} {owner:>8}  {info.image or '-'}")
        return 0
    lines = collect(force=args.force, dry_run=args.dry_run)
    print("\n".join(lines) if lines else "nothing to reap")
    return 0

"""What ``rock.make(id, backend="remote")`` costs beside the one request it sends.

    .venv/bin/python benchmarks/remote_make.py [--n 500] [--targets embedded,default]

Against a fresh ``rock-env admin start`` child process (``embedded``: ``workers=0``; ``default``:
one worker process per core), alternating in one run:

* ``raw``: the bare request, ``POST /api/v1/envs`` with the same JSON body on one keep-alive
  ``http.client`` connection (and its ``DELETE`` afterwards, not timed);
* ``make``: ``rock.make(id, backend="remote", base_url=...)`` (then ``env.close()``, not timed).

Prints p50/p95 of each and the ratio of the p50s (issue #15's target: make p50 <= 2x raw).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

import rock_env as rock
from rock_env.remote.pool import close_shared
from rock_env.server.testing import ServerProcess

ENV_ID = "game:Sokoban-v0-easy"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--targets", default="embedded,default")
    args = parser.parse_args()
    print(f"# {args.n} makes of {ENV_ID} each way; {os.cpu_count()} cores")
    for name in args.targets.split(","):
        workers = "workers=0" if name == "embedded" else "workers=auto"
        with tempfile.TemporaryDirectory(prefix="rock-make-") as tmp, ServerProcess.admin(Path(tmp), workers) as admin:
            parts = urlsplit(admin.url)
            conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port)
            body = json.dumps({"env_id": ENV_ID}).encode()
            headers = {"content-type": "application/json"}
            rock.make(ENV_ID, backend="remote", base_url=admin.url).close()  # first make: pool and registry warm
            raw: list[float] = []
            made: list[float] = []
            for _ in range(args.n):
                t = time.perf_counter()
                conn.request("POST", "/api/v1/envs", body, headers)
                answer = conn.getresponse().read()
                raw.append(time.perf_counter() - t)
                conn.request("DELETE", f"/api/v1/envs/{json.loads(answer)['id']}")
                conn.getresponse().read()
                t = time.perf_counter()
                env = rock.make(ENV_ID, backend="remote", base_url=admin.url)
                made.append(time.perf_counter() - t)
                env.close()
            conn.close()
            close_shared()
        r50, m50 = np.percentile(raw, 50) * 1e3, np.percentile(made, 50) * 1e3
        print(
            f"{name:9s} raw POST p50 {r50:.2f} ms p95 {np.percentile(raw, 95) * 1e3:.2f} ms | "
            f"rock.make p50 {m50:.2f} ms p95 {np.percentile(made, 95) * 1e3:.2f} ms | make/raw p50 {m50 / r50:.2f}x"
        )


if __name__ == "__main__":
    main()

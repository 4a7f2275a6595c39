"""Model service: per-turn overhead of an agent's model call answered by the trainer, ours vs ROCK 1.11.

A turn is: the agent (inside a sandbox, network off) sends chat-completions request i -> the trainer
has it -> the trainer answers at once -> the agent has the answer. The agent measures it; the
conversation grows every turn (as an agent's does), so turn 200 moves more bytes than turn 2.

* ours, namespace and docker: one sandbox, one agent, ``--turns`` turns (default 200): p50/p95 and
  turns 2-21 vs the last 20 (flat in the turn number?);
* ours, ``--concurrent`` episodes at once (default 256: 16 namespace sandboxes x 16 episodes, each
  its own keep-alive connection) through one trainer process that answers each request ``--think``
  seconds on average (0.5-1.5x, default 1) after it has it, as a model would: the overhead per turn is the agent's time
  minus that (p50/p95/max). Answering at once instead would measure throughput, not overhead;
* ROCK 1.11 (``rl-rock[model-service]`` in its own venv, ``--rock-venv``): its server
  ``rock model-service start --type local`` and its ``rock model-service anti-call-llm`` path on the
  host, the same agent (over TCP to its port), ``--rock-turns`` turns (default 6; each takes seconds).

Run: ``.venv/bin/python benchmarks/model_service.py`` (``--skip-rock`` to leave ROCK out).
Set up ROCK once: ``python3 -m venv ~/.cache/rock-env/rl-rock-ms && ~/.cache/rock-env/rl-rock-ms/bin/pip install 'rl-rock[model-service]'``.
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _stats import pct

from rock_env.agents import ModelService
from rock_env.sandbox import Sandbox

#: the agent: stdlib only; ``episodes`` keep-alive connections, ``turns`` turns each; prints per-turn seconds
AGENT = r"""
import asyncio, json, os, sys, time
episodes, turns = int(sys.argv[1]), int(sys.argv[2])
url = os.environ["OPENAI_BASE_URL"]
host, port = url.split("//")[1].split("/")[0].split(":")
async def episode(n):
    reader, writer = await asyncio.open_connection(host, int(port))
    messages = [{"role": "system", "content": "You are a careful agent. " * 8}]
    times = []
    for turn in range(turns):
        messages.append({"role": "user", "content": f"episode {n} turn {turn}: observation " + "x" * 200})
        body = json.dumps({"model": "m", "messages": messages}).encode()
        head = (f"POST /v1/chat/completions HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n"
                f"content-length: {len(body)}\r\n\r\n").encode()
        start = time.perf_counter()
        writer.write(head + body)
        await writer.drain()
        headers = await reader.readuntil(b"\r\n\r\n")
        length = int([l for l in headers.split(b"\r\n") if l.lower().startswith(b"content-length:")][0].split(b":")[1])
        data = json.loads(await reader.readexactly(length))
        elapsed = time.perf_counter() - start
        message = data["choices"][0]["message"]
        if message["content"].startswith("think="):  # the trainer took that long on purpose: not overhead
            elapsed -= float(message["content"][6:])
        times.append(elapsed)
        messages.append(message)
    writer.close()
    return times
async def main():
    results = await asyncio.gather(*(episode(n) for n in range(episodes)))
    print("TIMES " + json.dumps(results))
asyncio.run(main())
"""


def _answer_all(svc: ModelService, count: int) -> None:
    for _ in range(count):
        req = svc.get(timeout=120)
        svc.answer(req.id, f"ok {req.turn}")


def _times(output: str) -> list[list[float]]:
    return json.loads(output.split("TIMES ", 1)[1])


def _line(name: str, values: list[float]) -> str:
    return (
        f"{name:<44} p50 {statistics.median(values) * 1e3:8.2f} ms  p95 {pct(values, 0.95) * 1e3:8.2f} ms  "
        f"max {max(values) * 1e3:8.2f} ms  (n={len(values)})"
    )


def ours_single(runtime: str, turns: int) -> dict[str, float]:
    with ModelService() as svc, Sandbox(runtime=runtime, model_service=svc) as sb:
        sb.write_file("agent.py", AGENT)
        trainer = threading.Thread(target=_answer_all, args=(svc, turns + 1), daemon=True)
        trainer.start()
        result = sb.exec(["python3", "agent.py", "1", str(turns + 1)], timeout=600)
        trainer.join()
    (times,) = _times(result.output)
    times = times[1:]  # turn 1 opens the connection
    print(_line(f"ours {runtime}: all turns", times))
    early, late = times[1:21], times[-20:]
    print(_line(f"ours {runtime}: turns 2-21", early))
    print(_line(f"ours {runtime}: turns {turns - 19}-{turns}", late))
    return {"p50": statistics.median(times), "early": statistics.median(early), "late": statistics.median(late)}


class _ThinkingTrainer:
    """Answers each request 0.5-1.5 x ``think`` seconds after it has it, as a model generating the answer would.

    The answer says how long the trainer took on purpose (``think=<s>``); the agent subtracts it.

    One thread takes requests, one answers them when due (a heap and a timed condition wait).
    """

    def __init__(self, svc: ModelService, count: int, think: float) -> None:
        self.svc, self.count, self.think = svc, count, think
        self.due: list[tuple[float, str, float]] = []
        self.rng = random.Random(0)
        self.cond = threading.Condition()
        self.threads = [
            threading.Thread(target=self._take, daemon=True),
            threading.Thread(target=self._answer, daemon=True),
        ]
        for thread in self.threads:
            thread.start()

    def _take(self) -> None:
        for _ in range(self.count):
            req = self.svc.get(timeout=600)
            think = self.think * (0.5 + self.rng.random())  # generations differ in length
            with self.cond:
                heapq.heappush(self.due, (time.monotonic() + think, req.id, think))
                self.cond.notify()

    def _answer(self) -> None:
        for _ in range(self.count):
            with self.cond:
                while not self.due or self.due[0][0] > time.monotonic():
                    self.cond.wait(None if not self.due else self.due[0][0] - time.monotonic())
                _, request_id, think = heapq.heappop(self.due)
            self.svc.answer(request_id, f"think={think!r}")

    def join(self) -> None:
        for thread in self.threads:
            thread.join()


def ours_concurrent(total: int, turns: int, sandboxes: int, think: float) -> list[float]:
    """``total`` episodes at once; the trainer answers each request after a think time; overhead = time - think."""
    per = total // sandboxes
    with ModelService() as svc:
        boxes = [Sandbox(runtime="namespace", model_service=svc) for _ in range(sandboxes)]
        try:
            for sb in boxes:
                sb.start()
                sb.write_file("agent.py", AGENT)
            trainer = _ThinkingTrainer(svc, per * sandboxes * turns, think)
            procs = [sb.spawn(f"python3 agent.py {per} {turns}") for sb in boxes]
            outputs = []
            for proc in procs:
                proc.wait(timeout=900)
                outputs.append(proc.output())
            trainer.join()
        finally:
            for sb in boxes:
                sb.stop()
    times = [t for out in outputs for episode in _times(out) for t in episode[1:]]
    print(_line(f"ours namespace: {per * sandboxes} concurrent episodes (overhead)", times))
    return times


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rock(venv: Path, turns: int) -> list[float]:
    """ROCK 1.11: its local model service and its anti-call-llm CLI as the trainer, on the host."""
    rock_cli = venv / "bin" / "rock"
    work = Path(tempfile.mkdtemp(prefix="rock-ms-bench-"))
    port = _free_port()
    env = {**os.environ, "ROCK_MODEL_SERVICE_DATA_DIR": str(work / "logs")}
    (work / "logs").mkdir()
    server = None
    agent: subprocess.Popen[str] | None = None
    pid_file = work / "data" / "cli" / "model" / "pid.txt"
    try:
        # its server inherits the CLI's stdout: a file, not a pipe (a pipe would never reach EOF)
        with (work / "start.log").open("w") as log:
            started = subprocess.run(
                [
                    str(rock_cli),
                    "model-service",
                    "start",
                    "--type",
                    "local",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                ],
                cwd=work,
                env=env,
                timeout=120,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        if pid_file.exists():
            server = pid_file.read_text().strip()
        if started.returncode != 0 or not server:
            raise RuntimeError(f"rock model-service start failed: {(work / 'start.log').read_text()[-800:]}")
        agent_env = {**env, "OPENAI_BASE_URL": f"http://127.0.0.1:{port}/v1"}
        agent = subprocess.Popen(
            [sys.executable, "-c", AGENT, "1", str(turns + 1)], env=agent_env, stdout=subprocess.PIPE, text=True
        )

        def argv(index: int, response: str | None) -> list[str]:
            args = [str(rock_cli), "model-service", "anti-call-llm", "--index", str(index)]
            return [*args, "--response", response] if response is not None else args

        def completion(index: int) -> str:
            message = {"role": "assistant", "content": f"ok {index}"}
            choice = {"index": 0, "finish_reason": "stop", "message": message}
            return json.dumps(
                {"id": f"c{index}", "object": "chat.completion", "created": 0, "model": "m", "choices": [choice]}
            )

        def anti_call(index: int, response: str | None) -> None:
            subprocess.run(argv(index, response), cwd=work, env=env, check=True, capture_output=True, timeout=600)

        requests = turns + 1
        anti_call(0, None)  # waits for request 1
        for index in range(1, requests):
            anti_call(index, completion(index))  # answers request i, waits for request i+1
        # the last answer: its CLI then waits for a request that never comes (ROCK ends it with SESSION_END
        # when it watches the agent's pid); stop it once the agent has its answer
        last = subprocess.Popen(
            argv(requests, completion(requests)),
            cwd=work,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            out, _ = agent.communicate(timeout=600)
        finally:
            last.kill()
            last.wait()
    finally:
        if agent is not None and agent.poll() is None:
            agent.kill()
            agent.wait()
        if server:
            with contextlib.suppress(OSError, ValueError):  # the server ROCK's CLI started for us (its pid file)
                os.kill(int(server), signal.SIGKILL)
        shutil.rmtree(work, ignore_errors=True)
    (times,) = _times(out)
    times = times[1:]
    print(_line("ROCK 1.11 local + anti-call-llm (host)", times))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=200)
    parser.add_argument("--concurrent", type=int, default=256)
    parser.add_argument("--sandboxes", type=int, default=16)
    parser.add_argument("--concurrent-turns", type=int, default=10)
    parser.add_argument(
        "--think", type=float, default=1.0, help="seconds the trainer takes per answer (concurrent run)"
    )
    parser.add_argument("--rock-turns", type=int, default=6)
    parser.add_argument("--rock-venv", type=Path, default=Path.home() / ".cache" / "rock-env" / "rl-rock-ms")
    parser.add_argument("--skip-rock", action="store_true")
    parser.add_argument("--skip-docker", action="store_true")
    args = parser.parse_args()
    print(f"host: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start")
    ns = ours_single("namespace", args.turns)
    if not args.skip_docker:
        ours_single("docker", args.turns)
    conc = ours_concurrent(args.concurrent, args.concurrent_turns, args.sandboxes, args.think)
    if not args.skip_rock:
        rock_times = rock(args.rock_venv, args.rock_turns)
        ratio = statistics.median(rock_times) / ns["p50"]
        print(f"ROCK / ours (namespace) per-turn p50: {ratio:,.0f}x")
    print(f"namespace flatness: turns 2-21 p50 {ns['early'] * 1e3:.2f} ms, last 20 p50 {ns['late'] * 1e3:.2f} ms")
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    print(f"{args.concurrent} concurrent: max turn {max(conc) * 1e3:.1f} ms (target < 50 ms)")


if __name__ == "__main__":
    main()

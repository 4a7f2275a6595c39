"""Claim: `import rock_env` is fast (well under 300 ms), because gem is imported lazily.

Runs, in fresh interpreters and interleaved, `import rock_env`, `import gem` and a bare
`import gymnasium` (a floor: rock_env registers Gymnasium aliases), and prints the median and
p95 wall time of each and the ratios.

    .venv/bin/python benchmarks/import_time.py [--repeats 15]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

CASES = {
    "rock_env": "import rock_env",
    "gem": "import gem",
    "gymnasium (floor)": "import gymnasium",
}


def one_run(code: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    return time.perf_counter() - start


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    baseline = [one_run("pass") for _ in range(args.repeats)]
    samples: dict[str, list[float]] = {name: [] for name in CASES}
    for _ in range(args.repeats):
        for name, code in CASES.items():
            samples[name].append(one_run(code))
    start_cost = statistics.median(baseline)
    print(f"interpreter start (subtracted): {start_cost * 1000:.1f} ms")
    medians = {}
    for name, values in samples.items():
        net = [v - start_cost for v in values]
        medians[name] = statistics.median(net)
        print(f"{name:<20} p50 {medians[name] * 1000:7.1f} ms   p95 {percentile(net, 0.95) * 1000:7.1f} ms")
    print(f"ratio gem / rock_env: {medians['gem'] / medians['rock_env']:.1f}x")


if __name__ == "__main__":
    main()

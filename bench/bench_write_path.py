"""Benchmark: what the service layer costs on the hot path, beside the code before it, in one run.

`job.submit` goes through the service layer now (validation by the rules, the provider's Actor,
change events on the bus with the job path's cache subscribed). This runs `bench_store.py`
(the JobService.submit rate at 64 concurrent submitters, and the bare insert-plus-update
transaction of the same run) of a tree from before the service layer and of this tree, in
turns, several rounds each, and prints both rates, both ratios to their bare transaction and
the change. The target: the service layer costs less than 10 % (ratio of ratios >= 0.90).
Because the bare transaction's rate swings with the machine's load, the job rate is also given
as a share of `store.record_job`'s (the same store write without the job path), measured in the
same process.

    git -C . worktree add /tmp/pcnet-before <commit>   # or: git archive <commit> | tar -x -C DIR
    .venv/bin/python bench/bench_write_path.py --before /tmp/pcnet-before
    .venv/bin/python bench/bench_write_path.py --before DIR --engines sqlite --rounds 5

Figures on a loaded machine vary from run to run; the turns and the median over rounds keep
the comparison fair (both trees see the same load), not absolute.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
LINE = re.compile(r"^\s+(\w+) (JobService\.submit|store\.record_job)\s+(\d+)/s\s+baseline\s+(\d+)/s"
                  r"\s+ratio ([0-9.]+)")


def run(tree: Path, engine: str, jobs: int, pg: str | None) -> tuple[float, float, float, float]:
    """(job rate, bare transaction rate, job rate / bare rate, job rate / record_job rate) at
    64 submitters of one bench_store run. The last divides the whole job path by the store
    write alone, measured in the same process moments later: the share of the time spent
    outside the database, the least disturbed by other load on the machine."""
    command = [sys.executable, str(tree / "bench" / "bench_store.py"), "--engines", engine,
               "--jobs", str(jobs)]
    if pg:
        command += ["--pg", pg]
    # The tree's own code, whatever is installed in the virtualenv.
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1800,
                         cwd=str(tree))
    if out.returncode != 0:
        raise SystemExit(f"{tree}: bench_store failed:\n{out.stderr[-2000:]}")
    found = {}
    for line in out.stdout.splitlines():
        m = LINE.match(line)
        if m and m.group(1) == engine:
            found[m.group(2)] = (float(m.group(3)), float(m.group(4)), float(m.group(5)))
    if set(found) != {"JobService.submit", "store.record_job"}:
        raise SystemExit(f"{tree}: no summary for {engine} in:\n{out.stdout[-2000:]}")
    rate, bare, ratio = found["JobService.submit"]
    return rate, bare, ratio, rate / found["store.record_job"][0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", required=True, type=Path,
                        help="a checkout of pcnet from before the service layer")
    parser.add_argument("--engines", default="sqlite,postgres")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=3000)
    parser.add_argument("--pg", default=None, help="PostgreSQL admin address (bench_store's --pg)")
    args = parser.parse_args()
    trees = {"before": args.before.resolve(), "now": HERE}
    print(f"before: {trees['before']}\nnow:    {trees['now']}\n"
          f"{args.rounds} rounds, {args.jobs} jobs at 64 submitters each (measured under load)\n")
    ok = True
    for engine in args.engines.split(","):
        figures = {name: [] for name in trees}
        for i in range(args.rounds):
            order = list(trees) if i % 2 == 0 else list(reversed(list(trees)))
            for name in order:
                figures[name].append(run(trees[name], engine, args.jobs, args.pg))
                rate, bare, ratio, share = figures[name][-1]
                print(f"  {engine} round {i + 1} {name:6} {rate:7.0f} jobs/s  bare {bare:6.0f}/s"
                      f"  ratio {ratio:.2f}  submit/record_job {share:.2f}", flush=True)
        medians = {name: [statistics.median(f[k] for f in figures[name]) for k in range(4)]
                   for name in trees}
        change = medians["now"][2] / medians["before"][2]
        share = medians["now"][3] / medians["before"][3]
        ok = ok and max(change, share) >= 0.90
        print(f"\n{engine}: median of {args.rounds}: before {medians['before'][0]:.0f} jobs/s (ratio "
              f"{medians['before'][2]:.2f}, submit/record_job {medians['before'][3]:.2f}), now "
              f"{medians['now'][0]:.0f} jobs/s (ratio {medians['now'][2]:.2f}, submit/record_job "
              f"{medians['now'][3]:.2f}); now/before: ratio to the bare transaction {change:.2f}, "
              f"submit/record_job {share:.2f} (target >= 0.90)\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""How long a healthy simulated fleet takes on this host, and whether every card passes.

    python benchmarks/bench_simulate.py                 # 4 nodes x 8 H100 (32 GPUs), quick
    python benchmarks/bench_simulate.py --nodes 32      # the 256-GPU figure

Target: a healthy 256-GPU fleet (32 nodes x 8 H100 SXM5, noise 0.01, profile ``quick``)
finishes in under 60 wall seconds on 2 cores with every card PASS. Simulated time comes from
the device model (burnin/sim/clock.py), so wall time is the CPU work itself: it grows with the
number of GPUs, never with the profile's minutes. The run goes through ``burnin run
--simulate`` as a user's would (worker processes, kernels on the CPU, sampler, store, checks,
reports). The last line is ``wall_s=<seconds> gpus=<n> pass=<n>``; a wall time depends on the
host and its load, so it is recorded with the machine and date in benchmarks/RESULTS.md, never
asserted by a test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

_SCENARIO = """\
[fleet]
name = "bench-{nodes}x{gpus}"
nodes = {nodes}
gpus_per_node = {gpus}
sku = "{sku}"
seed = 7
noise = 0.01
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=4, help="simulated nodes (default 4)")
    parser.add_argument("--gpus-per-node", type=int, default=8, help="GPUs per node (default 8)")
    parser.add_argument("--sku", default="H100-SXM5-80GB", help="SKU key (default H100 SXM5)")
    parser.add_argument("--profile", default="quick", help="profile (default quick)")
    args = parser.parse_args()

    from click.testing import CliRunner

    from burnin.cli import cli

    print(
        f"# bench_simulate nodes={args.nodes} gpus_per_node={args.gpus_per_node} "
        f"sku={args.sku} profile={args.profile} cpus={os.cpu_count()} "
        f"host={platform.node()} date={time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}"
    )
    with tempfile.TemporaryDirectory(prefix="burnin-bench-") as tmp:
        scenario = Path(tmp) / "fleet.toml"
        scenario.write_text(
            _SCENARIO.format(nodes=args.nodes, gpus=args.gpus_per_node, sku=args.sku),
            encoding="utf-8",
        )
        out = Path(tmp) / "runs"
        argv = ["run", "--simulate", str(scenario), "--profile", args.profile]
        start = time.monotonic()
        result = CliRunner().invoke(cli, [*argv, "--out", str(out), "--quiet"])
        wall_s = time.monotonic() - start
        reports = list(out.glob("*/report.json"))
        if not reports:
            raise SystemExit(f"no report written (exit {result.exit_code}):\n{result.output}")
        report = json.loads(reports[0].read_text(encoding="utf-8"))
    gpus = report["gpus"]
    passed = sum(1 for g in gpus if g["status"] == "PASS")
    for g in gpus:  # a healthy fleet has none: say which card and why
        for v in g["verdicts"] if g["status"] != "PASS" else ():
            if v["status"] not in ("PASS", "SKIP"):
                print(f"# {g['node']} gpu{g['index']} {v['check']} {v['status']}: {v['message']}")
    others = sorted({g["status"] for g in gpus} - {"PASS"})
    print(f"# exit={result.exit_code} status={report['status']} non-pass={others or 'none'}")
    print(f"wall_s={wall_s:.1f} gpus={len(gpus)} pass={passed}")
    sys.exit(0 if passed == len(gpus) else 1)


if __name__ == "__main__":
    main()

"""What judging and rendering a fleet's run costs: verdicts + report time, peak memory, HTML size.

    python benchmarks/bench_report.py               # 16 nodes x 8 GPUs, 15 min at 1 Hz
    python benchmarks/bench_report.py --full        # 256 nodes x 8 GPUs: ~1.8 M samples

The store is written straight into the run directory format (burnin/store.py: manifest.json,
nodes/<host>/{inventory,samples,results,events}.jsonl), as a real acceptance run of H100 SXM
cards would leave it, without the simulator: every GPU runs matmul for 9 minutes, then membw,
then all-reduce, sampled once a second; about one card in a hundred is slow (throughput at 0.6 x
its peers), hot (over its slowdown temperature, with thermal clock events) or returns wrong
matmul results; 4 nodes (32 GPUs) have one of each (tests/test_browser.py prints that report).
It then runs the verdicts stage (:func:`burnin.verdicts.evaluate`), renders every report
(:func:`burnin.reports.write_reports`) and prints the time of each (wall and CPU seconds), the
peak resident memory of the process (``resource.getrusage`` maxrss) and the size of
report.html. Targets at full size: under 60 s on 2 cores, under 4 GB, HTML under 15 MB.
Nothing here is a test: figures depend on the machine (benchmarks/RESULTS.md records them with
the machine's description).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PEAK_TFLOPS, PEAK_GBPS = 989.4, 3350.0  # H100 SXM5 bf16 dense and HBM3 (burnin/data/skus.toml)
SLOWDOWN_C, POWER_LIMIT_W = 89, 700.0
MATMUL_END_S, MEMBW_END_S = 540.0, 660.0
INVENTORY = {
    "kind": "cuda",
    "name": "NVIDIA H100 80GB HBM3",
    "board_part_number": "692-2G520-0200-000",
    "pci_device_id": "2330",
    "pci_subsystem_id": "16c110de",
    "vbios_version": "96.00.74.00.0D",
    "inforom_image_version": "G520.0200.00.05",
    "inforom_valid": True,
    "memory_total_mib": 81559,
    "sm_count": 132,
    "compute_capability": "9.0",
    "power_limit_default_w": POWER_LIMIT_W,
    "power_limit_enforced_w": POWER_LIMIT_W,
    "max_sm_clock_mhz": 1980,
    "max_mem_clock_mhz": 2619,
    "pcie_max_gen": 5,
    "pcie_max_width": 16,
    "slowdown_temp_c": SLOWDOWN_C,
    "shutdown_temp_c": 92,
    "ecc_enabled": True,
    "driver_version": "550.90.07",
    "ecc_aggregate_sbe": 0,
    "ecc_aggregate_dbe": 0,
    "remapped_rows_correctable": 0,
    "remapped_rows_uncorrectable": 0,
    "remapped_rows_pending": False,
    "remapped_rows_failure": False,
    "unsupported": ["fan_count"],
}
BUSES = ("18", "2A", "3A", "5D", "9A", "AB", "BA", "DB")


def fault(node: int, gpu: int) -> str | None:
    n = node * 8 + gpu
    if n % 97 == 13:
        return "slow"
    if n % 131 == 29:
        return "hot"
    if n % 173 == 20:
        return "sdc"
    return None


def write_store(root: Path, nodes: int, gpus: int, seconds: int) -> Path:
    """A finished acceptance run of ``nodes`` x ``gpus`` H100 cards, ``seconds`` at 1 Hz."""
    from burnin.config import load_config

    run = root / "bench-run"
    config = load_config("acceptance", ["report.site=bench-hall", "report.rack=A1-A32"])
    hosts = [f"node-{n:03d}" for n in range(nodes)]
    kernels = ["matmul", "membw", "allreduce"]
    manifest = {
        "schema": "burnin.run/1",
        "run_id": run.name,
        "argv": ["burnin", "run", "--profile", "acceptance"],
        "profile": "acceptance",
        "config": config.to_dict(),
        "started_at": "2026-12-02T00:00:00Z",
        "finished_at": "2026-12-02T00:15:00Z",
        "versions": {"burnin": "bench"},
        "nodes": hosts,
        "device_note": f"generated store: {nodes} nodes x {gpus} GPUs, {seconds} s at 1 Hz",
        "plan": [{"node": h, "device": d, "kernels": kernels} for h in hosts for d in range(gpus)],
        "interrupted": False,
        "elapsed_s": float(seconds),
    }
    run.mkdir(parents=True)
    (run / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    for n, host in enumerate(hosts):
        rng = random.Random(n)
        node_dir = run / "nodes" / host
        node_dir.mkdir(parents=True)
        kinds = [fault(n, d) for d in range(gpus)]
        with open(node_dir / "inventory.jsonl", "w", encoding="utf-8") as f:
            for d in range(gpus):
                uuid = f"GPU-{n:08x}-{d:04x}-4{n:03x}-8{d:03x}-{n * 8 + d + 0x3C1A5F00:012x}"
                inv = {"device": d, **INVENTORY, "uuid": uuid}
                inv["serial"] = f"{1650000000000 + n * 8 + d}"
                inv["pci_bus_id"] = f"00000000:{BUSES[d % 8]}:00.0"
                f.write(json.dumps(inv) + "\n")
        with open(node_dir / "events.jsonl", "w", encoding="utf-8") as f:
            for d in range(gpus):
                t0 = 5.0 * (d // 2)  # two at a time, 5 s apart: the acceptance ramp's shape
                f.write(json.dumps({"device": d, "elapsed_s": t0, "kind": "device-start"}) + "\n")
        with open(node_dir / "results.jsonl", "w", encoding="utf-8") as f:
            for d in range(gpus):
                f.writelines(json.dumps(r) + "\n" for r in results(d, host, kinds[d], rng))
        with open(node_dir / "samples.jsonl", "w", encoding="utf-8") as f:
            for t in range(seconds):
                f.writelines(sample(d, t, kinds[d], rng) for d in range(gpus))
    return run


def results(d: int, host: str, kind: str | None, rng: random.Random) -> list[dict[str, Any]]:
    tflops = 790.0 * (0.6 if kind == "slow" else 1.0) * rng.gauss(1, 0.004)
    gbps = 2550.0 * rng.gauss(1, 0.004)
    busbw = 400.0 * rng.gauss(1, 0.002)
    wrong = 4 if kind == "sdc" else 0  # wrong elements in one verification: silent corruption
    stats = {"min": tflops * 0.99, "p50": tflops, "p99": tflops * 1.01, "cv": 0.005}
    base = {"device": d, "node": host}
    progress = [
        {**base, "elapsed_s": t, "type": "progress", "kernel": "matmul", "tflops": tflops}
        for t in range(30, int(MATMUL_END_S), 30)
    ]
    return [
        {**base, "elapsed_s": 0.5, "type": "start"},
        {**base, "elapsed_s": 0.5, "type": "kernel-start", "kernel": "matmul"},
        *progress,
        {
            **base,
            "elapsed_s": MATMUL_END_S,
            "type": "result",
            "kernel": "matmul",
            "dtype": "bf16",
            "size": 8192,
            "metrics": {"matmul_bf16_tflops": tflops, "matmul_tflops": tflops},
            "verifications": 60,
            "failed_verifications": 1 if kind == "sdc" else 0,
            "wrong_elements": wrong,
            "dtypes": {"bf16": {"tflops": stats, "verifications": 60, "wrong_elements": wrong}},
        },
        {**base, "elapsed_s": MATMUL_END_S, "type": "kernel-start", "kernel": "membw"},
        {
            **base,
            "elapsed_s": MEMBW_END_S,
            "type": "result",
            "kernel": "membw",
            "size_mib": 4096,
            "metrics": {"membw_gbps": gbps, "membw_copy_gbps": gbps, "membw_triad_gbps": gbps},
            "verifications": 1,
            "failed_verifications": 0,
            "wrong_elements": 0,
        },
        {**base, "elapsed_s": MEMBW_END_S, "type": "kernel-start", "kernel": "allreduce"},
        {
            **base,
            "elapsed_s": 890.0,
            "type": "result",
            "kernel": "allreduce",
            "metrics": {"allreduce_busbw_gbps": busbw, "allreduce_avg_busbw_gbps": busbw},
            "backend": "nccl",
            "world_size": 8,
            "rank": d,
            "members": list(range(8)),
            "missing": [],
            "sizes": [
                {
                    "size_bytes": 1 << 30,
                    "count": 1 << 28,
                    "time_us": 4700.0,
                    "algbw_gbps": busbw * 4 / 7,
                    "busbw_gbps": busbw,
                    "wrong": 0,
                }
            ],
            "pairs": [],
            "wrong": 0,
            "verifications": 1,
            "failed_verifications": 0,
            "wrong_elements": 0,
        },
        {**base, "elapsed_s": 895.0, "type": "done", "interrupted": False},
    ]


def sample(d: int, t: int, kind: str | None, rng: random.Random) -> str:
    busy = 5 * (d // 2) <= t < 890
    load = 1.0 if t < MATMUL_END_S else 0.8
    temp = (68.0 if kind != "hot" else 93.0) if busy else 34.0
    temp += rng.gauss(0, 0.6)
    power = (POWER_LIMIT_W * 0.96 * load if busy else 70.0) + rng.gauss(0, 4)
    clock = 1980 if busy else 345
    reasons = '["sw_power_cap"]' if busy and t % 7 == 0 else "[]"
    if kind == "hot" and busy and t > 120:
        clock, reasons = 1400, '["hw_thermal_slowdown","sw_thermal_slowdown"]'
    if not busy:
        reasons = '["gpu_idle"]'
    util = 100.0 if busy else 0.0
    energy = 1e7 + t * power
    return (
        f'{{"elapsed_s":{t}.0,"temp_c":{math.floor(temp)},"power_w":{power:.2f},'
        f'"energy_j":{energy:.1f},"sm_clock_mhz":{clock},"util_pct":{util},'
        f'"throttle_reasons":{reasons},"ecc_volatile_sbe":0,"ecc_volatile_dbe":0,'
        f'"pcie_gen":5,"pcie_width":16,"pcie_replay_count":0,"power_limit_w":{POWER_LIMIT_W},'
        f'"unsupported":["fan_pct"],"device":{d}}}\n'
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=16, help="nodes (default 16)")
    parser.add_argument("--full", action="store_true", help="256 nodes, the fleet-scale target")
    parser.add_argument("--gpus", type=int, default=8, help="GPUs per node (default 8)")
    parser.add_argument("--seconds", type=int, default=900, help="samples per GPU at 1 Hz")
    parser.add_argument("--keep", default="", help="write the store here and keep it")
    args = parser.parse_args()
    nodes = 256 if args.full else args.nodes
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from burnin.reports import write_reports
    from burnin.store import RunStore, frozen
    from burnin.verdicts import evaluate

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.keep) if args.keep else Path(tmp)
        t0 = time.perf_counter()
        run = write_store(root, nodes, args.gpus, args.seconds)
        t1, c1 = time.perf_counter(), time.process_time()
        # As `burnin report` does: read once, judge, render, the store frozen for the collector.
        with frozen(RunStore(run).load) as loaded:
            tl, cl = time.perf_counter(), time.process_time()
            evaluate(loaded)
            t2, c2 = time.perf_counter(), time.process_time()
            context = write_reports(run, run=loaded)
            t3, c3 = time.perf_counter(), time.process_time()
        html_mb = (run / "report.html").stat().st_size / 1e6
        samples = nodes * args.gpus * args.seconds
        counts: dict[str, int] = {}
        for g in context["gpus"]:
            counts[g["status"]] = counts.get(g["status"], 0) + 1
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # kB on Linux
    print(f"store: {nodes} nodes x {args.gpus} GPUs, {samples} samples, written in {t1 - t0:.1f} s")
    print(f"statuses: {dict(sorted(counts.items()))}")
    # CPU seconds beside wall seconds: on a shared machine the wall clock includes the time
    # other jobs held the cores.
    print(f"load store (json + schema check): {tl - t1:.1f} s (cpu {cl - c1:.1f} s)")
    print(f"verdicts (evaluate): {t2 - tl:.1f} s (cpu {c2 - cl:.1f} s)")
    print(f"render (write_reports): {t3 - t2:.1f} s (cpu {c3 - c2:.1f} s)")
    print(
        f"load + verdicts + render: {t3 - t1:.1f} s, cpu {c3 - c1:.1f} s "
        "(target < 60 s at 256 nodes on 2 cores)"
    )
    print(f"peak memory (maxrss): {peak_gb:.2f} GB (target < 4 GB)")
    print(f"report.html: {html_mb:.2f} MB (target < 15 MB)")


if __name__ == "__main__":
    main()

"""All-reduce across the devices of one node: bus bandwidth, exact answers and pairwise links.

Every device's worker runs this kernel at the same step of the plan. The workers meet through a
``FileStore`` in the run directory (nothing new listens on the network: the group is pinned
to the loopback interface) and form one torch.distributed group, NCCL on GPUs and gloo on the CPU
fallback, always with an explicit timeout and torn down in ``finally`` so a failing card cannot
hang the node. A device that does not arrive in time is left out and the others go on. No
collective is waited on by blocking: each rank polls completion with heartbeats and gives up at
a deadline on the kernel's clock, naming the peer that stopped answering (kernels/peerwait.py),
so one hung card leaves its peers alive to report it rather than killed beside it.

Correctness follows nccl-tests' "verifiable" idea: device ``d`` contributes the small integers
``((i + 7·d + seed) mod 13) − 6``, so the expected sum is exact in fp32 whatever the reduction
order and every differing element is counted as ``#wrong`` (0 ULP tolerance, as nccl-tests).
Timing follows nccl-tests' doc/PERFORMANCE.md, after warmup and a barrier (CUDA events on a
GPU, ``perf_counter`` on the CPU)::

    algbw = S / t                 S = bytes in the buffer, t = seconds per all-reduce
    busbw = algbw · 2(n − 1) / n  n = ranks in the group; GB = 1e9 bytes

Each rank's time passes through the device seam (``device_time_s("allreduce", t, bytes)`` with
the bytes that rank moves over its links, ``S·2(n−1)/n`` per call) and the group's time is the
maximum over its ranks, so one slow GPU slows every group it belongs to. The node's figure is
the busbw at the largest size (what Azure NHC's ``check_nccl_allreduce`` judges); the mean over
sizes is nccl-tests' "Avg bus bandwidth". Then every pair of devices runs the test on its own
(disjoint rounds on GPUs, one pair at a time on the shared CPU) so the ``slow-link`` check can
name the GPU every slow pair has in common. Remaining time keeps the largest all-reduce going
as stress, verified every few batches. Timed calls reduce zeros (the only fixed point of a
repeated in-place sum); the data patterns are checked in separate verified calls.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from burnin.errors import ConfigError
from burnin.kernels.base import KernelContext, StepTimer, share_field, summarize
from burnin.kernels.collectives import (
    _MOD,
    _OFFSET,
    _STRIDE,
    CONFIRM_RATIO,
    NodePlan,
    Pair,
    backend_for,
    bandwidth_gbps,
    bus_factor,
    group_env,
    node_plan,
    pair_rounds,
    typical_pair_gbps,
)
from burnin.kernels.peerwait import PeerStalled, Waiter, leave_group, work_block
from burnin.kernels.registry import register

_ELEM_BYTES = 4  # fp32, nccl-tests' default type
_CHUNK = 1 << 24  # elements per fill/verify pass: bounds the extra memory to about 200 MB
_MAX_LOCATIONS = 8
_MAX_SIZE_BYTES = 1 << 36  # 64 GiB: beyond any single GPU's memory today
_POLL_S = 0.05


@register("allreduce")
class Allreduce:
    """All-reduce (sum, fp32) across the node's devices, then pairwise, verified exactly."""

    @dataclass(frozen=True, kw_only=True)
    class Config:
        sizes_bytes: tuple[int, ...] = (1 << 20, 1 << 24, 1 << 28, 1 << 30)  # 1 MiB..1 GiB
        cpu_sizes_bytes: tuple[int, ...] = (1 << 12, 1 << 16, 1 << 20)  # gloo on loopback
        share: float = share_field()
        iterations: int = field(default=20, metadata={"min": 1, "max": 100000})  # nccl-tests -n
        warmup: int = field(default=5, metadata={"min": 0, "max": 10000})  # connections set up
        pairwise: bool = True
        pair_size_bytes: int = field(default=1 << 28, metadata={"min": 4, "max": _MAX_SIZE_BYTES})
        cpu_pair_size_bytes: int = field(default=1 << 18, metadata={"min": 4, "max": 1 << 30})
        # Stress phase: batches of about this long, all ranks agreeing to go on after each.
        batch_s: float = field(default=0.5, metadata={"min": 0.001, "max": 3600})
        verify_every: int = field(default=5, metadata={"min": 1, "max": 100000})
        # Rendezvous (after the last planned start) and collective timeout, capped at 0.8 ×
        # watchdog.timeout_s: a rank stuck on a dead peer says so instead of being killed as hung.
        timeout_s: float = field(default=30.0, metadata={"min": 0.1, "max": 86400})
        # The backend's own limit in host seconds (process group, store): a net behind
        # timeout_s, which counts on the kernel's clock. None = timeout_s, as on hardware, where
        # the two clocks are one; a simulated fleet judges on its device clock and sets it long.
        group_timeout_s: float | None = field(default=None, metadata={"min": 0.1, "max": 86400})

        def __post_init__(self) -> None:
            for name in ("sizes_bytes", "cpu_sizes_bytes"):
                sizes = getattr(self, name)
                bad = [s for s in sizes if not _ELEM_BYTES <= s <= _MAX_SIZE_BYTES]
                if not sizes or bad:
                    raise ConfigError(
                        f"kernels.allreduce.{name}",
                        f"expected one or more sizes from {_ELEM_BYTES} to {_MAX_SIZE_BYTES} "
                        f"bytes, got {list(sizes)}",
                    )

    def run(self, ctx: KernelContext) -> dict[str, Any]:
        base: dict[str, Any] = {"type": "result", "kernel": "allreduce", "metrics": {}}
        deadline = ctx.monotonic() + ctx.duration_s
        try:
            plan = node_plan(ctx.device_index, ctx.peers)
        except ValueError as exc:
            return {**base, "error": str(exc)}
        if len(plan.devices) < 2:
            return {
                **base,
                "skipped": f"all-reduce needs at least 2 devices on a node; {ctx.node} "
                f"runs it on {len(plan.devices)}",
            }
        if "meet_dir" not in ctx.peers:
            return {**base, "error": "no run directory to meet the other devices in"}
        return _Session(ctx, plan).run(base, deadline)


class _Session:
    """One device's part in the node's all-reduce: rendezvous, sweep, pairs, stress, teardown."""

    def __init__(self, ctx: KernelContext, plan: NodePlan) -> None:
        import torch
        import torch.distributed as dist

        self.torch, self.dist, self.ctx = torch, dist, ctx
        self.cfg: Allreduce.Config = ctx.config
        self.plan = plan
        self.devices = plan.devices
        self.cuda = ctx.is_cuda
        self.backend = backend_for("cuda" if self.cuda else "cpu")
        timeout_s = self.cfg.timeout_s
        if plan.watchdog_s:
            # A rank stuck on a dead peer must give up (and say so) before the watchdog kills
            # it as hung: the hang belongs to the peer.
            timeout_s = min(timeout_s, 0.8 * plan.watchdog_s)
        self.timeout_s = timeout_s
        group_timeout_s = self.cfg.group_timeout_s
        self.group_timeout_s = timeout_s if group_timeout_s is None else group_timeout_s
        self.timeout = timedelta(seconds=self.group_timeout_s)
        self.store: Any = None
        self.members: list[int] = []
        self.rank = -1
        self.verifications = 0
        self.failed = 0
        self.wrong = 0
        self.sizes: list[dict[str, Any]] = []
        self.pairs: list[dict[str, Any]] = []
        self.stress_busbw: list[float] = []
        self.wall_per_call_s = 0.0  # wall time per call of the last timed loop
        self.stress_wall_s = 0.0  # ... and of the sweep's largest size, to size stress batches
        self.waiter: Waiter | None = None
        self.pending: Any = None  # the collective this rank gave up waiting for, if any
        self.stalled: list[int] = []  # the peers named when it gave up

    # -- orchestration ------------------------------------------------------------------------

    def run(self, base: dict[str, Any], deadline: float) -> dict[str, Any]:
        dist, cfg = self.dist, self.cfg
        phase = "rendezvous"
        error = None
        try:
            self.members = self._rendezvous()
            me = self.ctx.device_index
            if me not in self.members:
                error = f"arrived after the group closed without it (members {self.members})"
            elif len(self.members) < 2:
                error = (
                    f"no other device arrived within {self.timeout_s:g} s of the last planned "
                    f"start (expected {self.devices})"
                )
            else:
                self.waiter = Waiter(
                    self.members,
                    me,
                    self.ctx.monotonic,
                    self.ctx.heartbeat,
                    self.timeout_s,
                    self.ctx.peers.get("beats"),
                )
                phase = "init"
                self._init()
                phase = "sweep"
                self._sweep()
                phase = "pairwise"
                if cfg.pairwise and len(self.members) >= 3:  # 2 devices: the pair is the group
                    self._pairwise()
                phase = "stress"
                self._stress(deadline)
        except PeerStalled as exc:
            self.stalled = exc.stalled
            error = f"{phase}: {exc}"
        except (RuntimeError, TimeoutError) as exc:  # DistError and the backends' timeouts
            error = f"{phase}: {type(exc).__name__}: {exc}"
        finally:
            leave_group(dist, self.pending, self.cuda, self.ctx.heartbeat, self.group_timeout_s)
        return self._result(base, error)

    def _result(self, base: dict[str, Any], error: str | None) -> dict[str, Any]:
        out = {
            **base,
            "backend": self.backend,
            "dtype": "fp32",
            "op": "sum",
            "world_size": len(self.members),
            "rank": self.rank,
            "members": self.members,
            "missing": [d for d in self.devices if d not in self.members],
            "stalled": self.stalled,
            "sizes": self.sizes,
            "pairs": self.pairs,
            "wrong": self.wrong,
            "verifications": self.verifications,
            "failed_verifications": self.failed,
        }
        if error:
            out["error"] = error
        metrics: dict[str, float] = {}
        if self.sizes:
            metrics["allreduce_busbw_gbps"] = self.sizes[-1]["busbw_gbps"]
            metrics["allreduce_avg_busbw_gbps"] = sum(s["busbw_gbps"] for s in self.sizes) / len(
                self.sizes
            )
        if self.stress_busbw:
            stats = summarize(self.stress_busbw)
            out["stress"] = {"batches": len(self.stress_busbw), **stats}
            metrics["allreduce_stress_busbw_gbps"] = stats["p50"]
        out["metrics"] = metrics
        return out

    # -- group setup --------------------------------------------------------------------------

    def _rendezvous(self) -> list[int]:
        """Agree on the members: every device that arrived before the first rank gave up.

        A rank waits for the last planned start (on the plan's clock, which a simulated fleet
        scales) and then ``timeout`` more (wall clock), heartbeating all along. The first rank
        to see every device, to stop waiting or to be asked to stop writes the member list
        with an atomic compare-and-set; every rank reads that same list, so a late device can
        never split the group.
        """
        ctx = self.ctx
        path = Path(ctx.peers["meet_dir"])
        path.mkdir(parents=True, exist_ok=True)
        store = self.dist.FileStore(str(path / f"allreduce-{ctx.seed}.store"), len(self.devices))
        store.set_timeout(self.timeout)
        store.set(f"here/{ctx.device_index}", "1")
        planned_end = ctx.monotonic() + self.plan.start_spread_s
        deadline = None
        while not store.check(["members"]):
            here = [d for d in self.devices if store.check([f"here/{d}"])]
            if deadline is None and ctx.monotonic() >= planned_end:
                deadline = time.monotonic() + self.timeout_s
            late = deadline is not None and time.monotonic() >= deadline
            late = late and ctx.seam.may_never_come([d for d in self.devices if d not in here])
            if len(here) == len(self.devices) or late or ctx.should_stop():
                store.compare_set("members", "", json.dumps(here))
                break
            ctx.heartbeat()
            time.sleep(_POLL_S)
        self.store = store
        return sorted(json.loads(store.get("members")))

    def _init(self) -> None:
        # Every group of this kernel is one node's: loopback only, and NCCL errors that end
        # the collective rather than the process (kernels/collectives.py).
        loopback = next((n for _, n in socket.if_nameindex() if n.startswith("lo")), None)
        os.environ.update(group_env(self.backend, True, os.environ, loopback))
        self.rank = self.members.index(self.ctx.device_index)
        self.dist.init_process_group(
            backend=self.backend,
            store=self.dist.PrefixStore("pg", self.store),
            rank=self.rank,
            world_size=len(self.members),
            timeout=self.timeout,
            device_id=self.ctx.device if self.cuda else None,
        )

    # -- phases -------------------------------------------------------------------------------

    def _sweep(self) -> None:
        sizes = self.cfg.sizes_bytes if self.cuda else self.cfg.cpu_sizes_bytes
        counts = sorted({max(1, s // _ELEM_BYTES) for s in sizes})
        for count in counts:
            self.sizes.append(self._measure(count, None, self.members))
            self.stress_wall_s = self.wall_per_call_s
            self.ctx.heartbeat()
            if self._agree(self.ctx.should_stop()):
                break
        self.ctx.emit(
            {"type": "progress", "kernel": "allreduce", "phase": "sweep", "sizes": self.sizes}
        )

    def _pairwise(self) -> None:
        torch, dist = self.torch, self.dist
        n = len(self.members)
        size = self.cfg.pair_size_bytes if self.cuda else self.cfg.cpu_pair_size_bytes
        count = max(1, size // _ELEM_BYTES)
        rounds = pair_rounds(n)
        if not self.cuda:
            # CPU "devices" share the same cores: concurrent pairs would measure each other.
            rounds = [[p] for r in rounds for p in r]
        # new_group is collective over the whole group: every rank creates every pair's group.
        pairs = sorted(p for r in rounds for p in r)
        groups = {p: dist.new_group(list(p), timeout=self.timeout) for p in pairs}
        # table[a, b] = (best busbw of pair a-b, wrong seen by rank a in it, times measured)
        table = torch.zeros(n, n, 3, dtype=torch.float64, device=self.ctx.device)
        if not self._rounds(rounds, groups, count, table):
            # Confirm before anyone is blamed: pairs under CONFIRM_RATIO of the typical pair run
            # once more (every rank holds the same table, so all choose the same pairs) and
            # keep their better figure; a real slow link stays slow, a scheduling hiccup not.
            busbw = {p: float(table[p[0], p[1], 0]) for p in pairs}
            again = [p for p, v in busbw.items() if v < CONFIRM_RATIO * typical_pair_gbps(busbw)]
            self._rounds([[p] for p in sorted(again)], groups, count, table)
        for a, b in pairs:
            if not table[a, b, 2].item():
                continue
            busbw_gbps = float(table[a, b, 0].item())
            self.pairs.append(
                {
                    "devices": [self.members[a], self.members[b]],
                    "size_bytes": count * _ELEM_BYTES,
                    "time_us": count * _ELEM_BYTES / (busbw_gbps * 1e3) if busbw_gbps else None,
                    "algbw_gbps": busbw_gbps,  # the bus factor of a pair is 2(2−1)/2 = 1
                    "busbw_gbps": busbw_gbps,
                    "wrong": int(table[a, b, 1].item() + table[b, a, 1].item()),
                    "measurements": int(table[a, b, 2].item()),
                }
            )
        self.ctx.emit(
            {"type": "progress", "kernel": "allreduce", "phase": "pairwise", "pairs": self.pairs}
        )

    def _rounds(
        self, rounds: list[list[Pair]], groups: dict[Pair, Any], count: int, table: Any
    ) -> bool:
        """Measure each round's pairs, then share the table with every rank; True if stopped."""
        stopped = False
        for rnd in rounds:
            for a, b in rnd:
                if self.rank in (a, b):
                    members = [self.members[a], self.members[b]]
                    res = self._measure(count, groups[(a, b)], members, best_call=True)
                    best = max(float(table[a, b, 0].item()), res["busbw_gbps"])
                    table[a, b, 0] = table[b, a, 0] = best
                    table[self.rank, b if self.rank == a else a, 1] += res["wrong"]
                    table[a, b, 2] += 1
                    table[b, a, 2] += 1
            self.ctx.heartbeat()
            if self._agree(self.ctx.should_stop()):  # also keeps the rounds apart
                stopped = True
                break
        # Only a pair's members write its cells and every value is >= 0, so MAX merges them.
        self._all_reduce(table, None, self.dist.ReduceOp.MAX)
        return stopped

    def _stress(self, deadline: float) -> None:
        if not self.sizes:
            return
        count = self.sizes[-1]["count"]
        # Batches are sized by the wall time a call really takes here (a simulated fast card
        # must not turn into thousands of CPU calls), the slowest rank's, so every rank makes
        # the same calls, at the fastest rate seen so far: one stalled estimate on a shared
        # host would shrink every later batch, where the ranks' start skew counts as link time.
        wall_s = self._max(self.stress_wall_s, None)
        buf = self.torch.zeros(count, dtype=self.torch.float32, device=self.ctx.device)
        batches = 0
        while not self._agree(self.ctx.monotonic() >= deadline or self.ctx.should_stop()):
            calls = max(1, int(self.cfg.batch_s / max(wall_s, 1e-6)))
            calls = self.ctx.seam.batch_steps("allreduce", calls)
            own_s = self._timed(buf, calls, None, len(self.members))
            seconds, batch_wall_s = self._maxes(own_s, self.wall_per_call_s)
            wall_s = min(wall_s, batch_wall_s)
            self.stress_busbw.append(
                bandwidth_gbps(count * _ELEM_BYTES, seconds, len(self.members))[1]
            )
            batches += 1
            if batches % self.cfg.verify_every == 0:
                self._verified(count, None, self.members)
            self.ctx.heartbeat()

    # -- measurements -------------------------------------------------------------------------

    def _measure(
        self, count: int, group: Any, members: list[int], best_call: bool = False
    ) -> dict[str, Any]:
        """Verify once, then time ``iterations`` calls after ``warmup``; one table row.

        ``best_call`` times every call alone and keeps the fastest (pairs): what a link can do,
        unmoved by a scheduler that stalls one call, as happens to CPU devices sharing cores.
        """
        wrong, locations = self._verified(count, group, members)
        buf = self.torch.zeros(count, dtype=self.torch.float32, device=self.ctx.device)
        for _ in range(self.cfg.warmup):
            self._all_reduce(buf, group)
        # nccl-tests' barrier before each size: every rank starts its timed calls together.
        self._max(0.0, group)
        if best_call:
            own_s = min(
                self._timed(buf, 1, group, len(members)) for _ in range(self.cfg.iterations)
            )
        else:
            own_s = self._timed(buf, self.cfg.iterations, group, len(members))
        # The group is as fast as its slowest rank: a slow GPU slows every group it is in.
        seconds = self._max(own_s, group)
        size_bytes = count * _ELEM_BYTES
        algbw, busbw = bandwidth_gbps(size_bytes, seconds, len(members))
        row = {
            "size_bytes": size_bytes,
            "count": count,
            "time_us": seconds * 1e6,
            "algbw_gbps": algbw,
            "busbw_gbps": busbw,
            "wrong": wrong,
        }
        if locations:
            row["locations"] = locations
        return row

    def _timed(self, buf: Any, calls: int, group: Any, ranks: int) -> float:
        """This rank's device seconds per call, through the seam, for ``calls`` calls."""
        if self.cuda:
            # Own work only: blocks just when this card is stuck (then it stops beating).
            self.torch.cuda.current_stream().synchronize()
            start = self.torch.cuda.Event(enable_timing=True)
            end = self.torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(calls):
                work = self._issue(buf, group)
                work.wait()  # orders the stream after it; never blocks the host
            end.record()
            self._await(end.query, "timed all-reduce", work)
            elapsed_s = start.elapsed_time(end) / 1000.0
        else:
            timer = StepTimer(self.ctx)
            timer.start()
            for _ in range(calls):
                self._all_reduce(buf, group)
            elapsed_s = timer.stop_s()
        self.wall_per_call_s = elapsed_s / calls
        moved = buf.numel() * _ELEM_BYTES * bus_factor(ranks) * calls
        return self.ctx.seam.device_time_s("allreduce", elapsed_s, moved) / calls

    def _verified(self, count: int, group: Any, members: list[int]) -> tuple[int, list[Any]]:
        """One all-reduce of the known pattern, compared element by element with the exact sum."""
        torch = self.torch
        buf = torch.empty(count, dtype=torch.float32, device=self.ctx.device)
        for start in range(0, count, _CHUNK):
            idx = torch.arange(start, min(start + _CHUNK, count), device=self.ctx.device)
            buf[start : start + idx.numel()] = self._pattern(idx, [self.ctx.device_index])
        self._all_reduce(buf, group)
        self.verifications += 1
        got = self.ctx.seam.corrupt(buf, self.verifications)
        wrong, locations = 0, []
        for start in range(0, count, _CHUNK):
            idx = torch.arange(start, min(start + _CHUNK, count), device=self.ctx.device)
            expected = self._pattern(idx, members)
            part = got[start : start + idx.numel()]
            bad = (part != expected).nonzero().flatten()
            wrong += int(bad.numel())
            for i in bad[: _MAX_LOCATIONS - len(locations)].tolist():
                locations.append(
                    {"index": start + i, "got": float(part[i]), "expected": float(expected[i])}
                )
        if wrong:
            self.failed += 1
            self.wrong += wrong
        return wrong, locations

    def _pattern(self, idx: Any, devices: list[int]) -> Any:
        total = self.torch.zeros(idx.numel(), dtype=self.torch.int64, device=idx.device)
        for d in devices:
            total += (idx + (_STRIDE * d + self.ctx.seed)) % _MOD
        return (total - _OFFSET * len(devices)).to(self.torch.float32)

    def _max(self, value: float, group: Any) -> float:
        return self._maxes(value, group=group)[0]

    def _maxes(self, *values: float, group: Any = None) -> list[float]:  # one collective
        t = self.torch.tensor(values, dtype=self.torch.float64, device=self.ctx.device)
        self._all_reduce(t, group, self.dist.ReduceOp.MAX)
        return [float(v) for v in t.tolist()]

    def _agree(self, stop: bool) -> bool:
        """True when any rank wants to stop; a collective, so every rank takes the same branch."""
        return self._max(1.0 if stop else 0.0, None) > 0

    # -- waiting without blocking -------------------------------------------------------------

    def _issue(self, tensor: Any, group: Any, op: Any = None) -> Any:
        op = self.dist.ReduceOp.SUM if op is None else op
        return self.dist.all_reduce(tensor, op=op, group=group, async_op=True)

    def _all_reduce(self, tensor: Any, group: Any, op: Any = None) -> None:
        """One all-reduce, polled to completion with heartbeats (kernels/peerwait.py)."""
        if self.cuda:
            self.torch.cuda.current_stream().synchronize()  # own work: see _timed
        work = self._issue(tensor, group, op)
        self._await(work.is_completed, "all-reduce", work, None if self.cuda else work_block(work))
        work.wait()  # completed: raises the backend's error if it failed; on CUDA orders the stream

    def _await(self, done: Any, what: str, work: Any = None, block: Any = None) -> None:
        assert self.waiter is not None
        self.pending = work
        self.waiter.wait(done, what, block)
        self.pending = None

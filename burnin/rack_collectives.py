"""The cross-node stage of a multi-node run: one all-reduce over every node, then node pairs.

Each node's parent process is one rank (the per-node workers have ended): the rack all-reduce
sums exact integers (inputs in [-6, 6], exact in float32, the node kernel's pattern from
kernels/collectives.py) over every node at each size and counts the wrong elements; algbw and
busbw follow nccl-tests (kernels/collectives.py: algbw = S / t, busbw = algbw · 2(n−1)/n,
GB = 1e9 B). The pair stage then pairs the nodes round by round (circle method, every node in
at most one pair per round, pairs of a round at once): both nodes of a pair all-reduce S bytes
in a group of their own (busbw = algbw for 2 ranks). On GPUs the rank
drives its node's first GPU over NCCL, so the figures measure each node's network path from
one GPU, not every GPU of the node at once; on the CPU fallback gloo carries host memory.
Every wait polls with a deadline (kernels/peerwait.py), and the process group's timeout is an
explicit ``timedelta``: a dead or hung node ends the stage with an error, never a hang.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from burnin.kernels.collectives import (
    _MOD,
    _OFFSET,
    _STRIDE,
    NCCL_ERROR_HANDLING,
    backend_for,
    bandwidth_gbps,
    pair_rounds,
)
from burnin.kernels.peerwait import Waiter, work_block

_BYTES_PER_ELEMENT = 4  # float32


def _pattern(torch: Any, numel: int, rank: int, device: str) -> Any:
    idx = torch.arange(numel, dtype=torch.int64, device=device)
    return ((idx + _STRIDE * rank) % _MOD - _OFFSET).to(torch.float32)


class Stage:
    """One rank's part of the cross-node stage; :meth:`run` returns its records as dicts.

    Args:
        store: the rendezvous store (a c10d ``Store``) the process group meets on.
        rank: this node's rank among the ``world`` nodes that take part.
        device: ``"cpu"`` or ``"cuda:N"``.
        timeout_s: the process group's timeout and each wait's deadline.
        clock: what the timings and deadlines read (the runtime's monotonic clock).
        heartbeat: called while waiting, so the node stays visibly alive.
        delay_s: a test seam (a slow link): seconds added inside every timed transfer.
    """

    def __init__(
        self,
        store: Any,
        rank: int,
        world: int,
        device: str,
        timeout_s: float,
        clock: Callable[[], float],
        heartbeat: Callable[[], None],
        delay_s: float = 0.0,
    ) -> None:
        import torch
        import torch.distributed as dist

        self.torch, self.dist = torch, dist
        self.store, self.rank, self.world, self.device = store, rank, world, device
        self.timeout_s, self.clock, self.heartbeat, self.delay_s = (
            timeout_s,
            clock,
            heartbeat,
            delay_s,
        )
        self.backend = backend_for("cuda" if device.startswith("cuda") else "cpu")

    def run(self, sizes: Sequence[int], pair_size: int, iters: int) -> dict[str, Any]:
        """{"allreduce": [...], "pairs": [...], "errors": [...]}; an error ends the stage."""
        out: dict[str, Any] = {"allreduce": [], "pairs": [], "errors": []}
        if self.backend == "nccl":
            os.environ.setdefault("TORCH_NCCL_ASYNC_ERROR_HANDLING", NCCL_ERROR_HANDLING)
        try:
            self.dist.init_process_group(
                self.backend,
                store=self.dist.PrefixStore("burnin-rack-pg/", self.store),
                rank=self.rank,
                world_size=self.world,
                timeout=timedelta(seconds=self.timeout_s),
            )
        except Exception as exc:  # a node that never joins: the store's timeout says so
            out["errors"].append(f"process group did not form: {type(exc).__name__}: {exc}")
            return out
        try:
            for size in sizes:
                out["allreduce"].append(self._allreduce(size, iters))
            rounds = pair_rounds(self.world)
            # Every rank makes every pair's group, in one order: torch names a group after
            # its ranks and the count of groups the process already has, so groups made only
            # by their members, round by round, would not meet.
            timeout = timedelta(seconds=self.timeout_s)
            groups = {p: self.dist.new_group(list(p), timeout=timeout) for r in rounds for p in r}
            for rnd in rounds:
                for a, b in rnd:
                    if self.rank in (a, b):
                        peer = b if self.rank == a else a
                        out["pairs"].append(self._pair(peer, groups[(a, b)], pair_size, iters))
        except Exception as exc:  # any failure is the stage's error record
            out["errors"].append(f"{type(exc).__name__}: {exc}")
        finally:
            self.dist.destroy_process_group()
        return out

    def _wait(self, work: Any, what: str) -> None:
        waiter = Waiter(
            members=range(self.world),
            me=self.rank,
            clock=self.clock,
            heartbeat=self.heartbeat,
            timeout_s=self.timeout_s,
        )
        block = work_block(work) if self.backend == "gloo" else None
        waiter.wait(work.is_completed, what, block)
        work.wait()

    def _sync(self) -> None:
        if self.backend == "nccl":
            self.torch.cuda.synchronize(self.device)

    def _allreduce(self, size: int, iters: int) -> dict[str, Any]:
        torch, numel = self.torch, max(1, size // _BYTES_PER_ELEMENT)
        mine = _pattern(torch, numel, self.rank, self.device)
        expected = sum(_pattern(torch, numel, r, self.device) for r in range(self.world))
        buf = mine.clone()
        self._wait(self.dist.all_reduce(buf, async_op=True), "rack all-reduce warm-up")
        elapsed, wrong = 0.0, 0
        for _ in range(iters):
            buf.copy_(mine)
            self._sync()
            start = self.clock()
            if self.delay_s:
                time.sleep(self.delay_s)
            self._wait(self.dist.all_reduce(buf, async_op=True), f"rack all-reduce {size} B")
            self._sync()
            elapsed += self.clock() - start
            wrong += int((buf != expected).sum().item())
        t = elapsed / iters
        return {"size_bytes": numel * _BYTES_PER_ELEMENT, "time_s": t, "wrong": wrong}

    def _pair(self, peer: int, group: Any, size: int, iters: int) -> dict[str, Any]:
        torch, dist, numel = self.torch, self.dist, max(1, size // _BYTES_PER_ELEMENT)
        mine = _pattern(torch, numel, self.rank, self.device)
        expected = mine + _pattern(torch, numel, peer, self.device)
        buf = mine.clone()
        what = f"pair all-reduce with rank {peer}"
        self._wait(dist.all_reduce(buf, group=group, async_op=True), what)
        elapsed, wrong = 0.0, 0
        for _ in range(iters):
            buf.copy_(mine)
            self._sync()
            start = self.clock()
            if self.delay_s:
                time.sleep(self.delay_s)
            self._wait(dist.all_reduce(buf, group=group, async_op=True), what)
            self._sync()
            elapsed += self.clock() - start
            wrong += int((buf != expected).sum().item())
        t = elapsed / iters
        _algbw, busbw = bandwidth_gbps(numel * _BYTES_PER_ELEMENT, t, 2)
        return {
            "peer": peer,
            "size_bytes": numel * _BYTES_PER_ELEMENT,
            "time_s": t,
            "busbw_gbps": busbw,
            "wrong": wrong,
        }


def rack_records(
    results: dict[int, dict[str, Any]], names: Sequence[str], backend: str
) -> list[dict[str, Any]]:
    """rack.jsonl's rack-allreduce and node-pair records from every rank's :meth:`Stage.run`.

    ``results`` by rank, ``names`` the node name of each rank. An all-reduce takes the slowest
    rank's time (the collective ends when its last rank does); its wrong elements add up.
    """
    world = len(names)
    out: list[dict[str, Any]] = []
    sizes = [r["size_bytes"] for r in results.get(0, {}).get("allreduce", [])]
    for k, size in enumerate(sizes):
        rows = [r["allreduce"][k] for r in results.values() if len(r["allreduce"]) > k]
        t = max(row["time_s"] for row in rows)
        algbw, busbw = bandwidth_gbps(size, t, world)
        out.append(
            {
                "type": "rack-allreduce",
                "ranks": world,
                "backend": backend,
                "size_bytes": size,
                "time_s": t,
                "algbw_gbps": algbw,
                "busbw_gbps": busbw,
                "wrong": sum(row["wrong"] for row in rows),
            }
        )
    for rank, result in sorted(results.items()):
        for row in result.get("pairs", []):
            if row["peer"] < rank:
                continue  # each pair once, from its lower rank; the wrong counts of both
            theirs: dict[str, Any] = next(
                (p for p in results.get(row["peer"], {}).get("pairs", []) if p["peer"] == rank),
                {},
            )
            out.append(
                {
                    "type": "node-pair",
                    "nodes": [names[rank], names[row["peer"]]],
                    "size_bytes": row["size_bytes"],
                    "busbw_gbps": min(row["busbw_gbps"], theirs.get("busbw_gbps", float("inf"))),
                    "wrong": row["wrong"] + int(theirs.get("wrong", 0)),
                }
            )
    return out

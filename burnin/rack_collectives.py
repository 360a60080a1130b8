"""The cross-node stage of a multi-node run: one all-reduce over every device, then node pairs.

The all-reduce spans every device of every node that finished: each node's parent process (its
per-node workers have ended) starts one process per device of its plan, and all of them, on
every node, join one process group through the torchrun rendezvous store (a client of its own
each, under a prefix of this stage). Node ``k`` of the ``live`` nodes owns global ranks
``offset_k .. offset_k + devices_k − 1`` (:func:`rank_offsets`, a prefix sum, so nodes may
differ); each process drives its own device, ``cuda:i`` over NCCL or the CPU over gloo. The
sums are exact integers (inputs in [-6, 6], exact in float32, the node kernel's pattern from
kernels/collectives.py) counted element by element as ``#wrong``; algbw and busbw follow
nccl-tests with n = every rank of the group (kernels/collectives.py: algbw = S / t, busbw =
algbw · 2(n−1)/n, GB = 1e9 B), t being the slowest rank's. The pair stage then runs in the
parent processes, one rank per node on its first device: the nodes pair up round by round
(circle method, every node in at most one pair per round, pairs of a round at once) and both
nodes of a pair all-reduce S bytes in a group of their own (busbw = algbw for 2 ranks), so a
pair measures one node's network path from one GPU. Every wait polls with a deadline
(kernels/peerwait.py), every group's timeout is an explicit ``timedelta``, and the parent kills
a device process still running past :func:`full_stage_limit_s`: a dead or hung node ends the
stage with an error, never a hang.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
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
from burnin.kernels.peerwait import Waiter, leave_group, work_block
from burnin.supervisor import describe_exit, kill_group

_BYTES_PER_ELEMENT = 4  # float32
FULL_PREFIX = "burnin-rack-full/"  # the all-reduce over every device
PAIRS_PREFIX = "burnin-rack-pg/"  # the node pairs
_LAUNCH_S = 60.0  # starting a device process (a fresh torch import) and its sizes' compute
_POLL_S = 0.2


def rank_offsets(devices: Sequence[int]) -> list[int]:
    """The first global rank of each node, given each node's device count (a prefix sum)."""
    out, total = [], 0
    for count in devices:
        out.append(total)
        total += count
    return out


def full_stage_limit_s(timeout_s: float) -> float:
    """How long a node's device processes may take before the parent kills them: forming the
    group (``timeout_s``), one stuck collective (up to twice ``timeout_s`` when no peer can be
    named, kernels/peerwait.py), leaving the group (``timeout_s`` and gloo's grace) and the
    launch and compute of a healthy stage (:data:`_LAUNCH_S`)."""
    return 4 * timeout_s + _LAUNCH_S


def _pattern(torch: Any, numel: int, rank: int, device: str) -> Any:
    idx = torch.arange(numel, dtype=torch.int64, device=device)
    return ((idx + _STRIDE * rank) % _MOD - _OFFSET).to(torch.float32)


def _expected(torch: Any, numel: int, ranks: Sequence[int], device: str) -> Any:
    """The exact sum of every rank's pattern: element ``i`` depends on ``i mod 13`` only, so a
    13-entry table summed over the ranks stands for hundreds of full-size patterns."""
    table = [sum((j + _STRIDE * r) % _MOD - _OFFSET for r in ranks) for j in range(_MOD)]
    idx = torch.arange(numel, dtype=torch.int64, device=device) % _MOD
    return torch.tensor(table, dtype=torch.float32, device=device)[idx]


class Stage:
    """One rank's part of a cross-node group; :meth:`full` and :meth:`pairs` return dicts.

    Args:
        store: the rack's rendezvous store (a c10d ``Store``) the group meets on.
        rank: this process's rank among the ``world`` ranks of the group.
        device: ``"cpu"`` or ``"cuda:N"``.
        timeout_s: the process group's timeout and each wait's deadline.
        clock: what the timings and deadlines read (the runtime's monotonic clock).
        heartbeat: called while waiting, so the process stays visibly alive.
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
        self.pending: Any = None  # the collective this rank gave up waiting for, if any

    def full(self, sizes: Sequence[int], iters: int) -> dict[str, Any]:
        """{"allreduce": [...], "errors": [...]}: the all-reduce over the whole group."""
        out: dict[str, Any] = {"allreduce": [], "errors": []}
        self._in_group(FULL_PREFIX, out, lambda: self._sizes(sizes, iters, out))
        return out

    def pairs(self, size: int, iters: int) -> dict[str, Any]:
        """{"pairs": [...], "errors": [...]}: this node's pairs, one rank per node."""
        out: dict[str, Any] = {"pairs": [], "errors": []}
        self._in_group(PAIRS_PREFIX, out, lambda: self._pairs(size, iters, out))
        return out

    def _in_group(self, prefix: str, out: dict[str, Any], body: Callable[[], None]) -> None:
        if self.backend == "nccl":
            os.environ.setdefault("TORCH_NCCL_ASYNC_ERROR_HANDLING", NCCL_ERROR_HANDLING)
        try:
            self.dist.init_process_group(
                self.backend,
                store=self.dist.PrefixStore(prefix, self.store),
                rank=self.rank,
                world_size=self.world,
                timeout=timedelta(seconds=self.timeout_s),
            )
        except Exception as exc:  # a rank that never joins: the store's timeout says so
            out["errors"].append(f"process group did not form: {type(exc).__name__}: {exc}")
            return
        try:
            body()
        except Exception as exc:  # any failure is the stage's error record
            out["errors"].append(f"{type(exc).__name__}: {exc}")
        finally:
            leave_group(
                self.dist, self.pending, self.backend == "nccl", self.heartbeat, self.timeout_s
            )

    def _sizes(self, sizes: Sequence[int], iters: int, out: dict[str, Any]) -> None:
        for size in sizes:
            out["allreduce"].append(self._timed(size, iters, None, list(range(self.world))))

    def _pairs(self, size: int, iters: int, out: dict[str, Any]) -> None:
        rounds = pair_rounds(self.world)
        # Every rank makes every pair's group, in one order: torch names a group after its
        # ranks and the count of groups the process already has, so groups made only by their
        # members, round by round, would not meet.
        timeout = timedelta(seconds=self.timeout_s)
        groups = {p: self.dist.new_group(list(p), timeout=timeout) for r in rounds for p in r}
        for rnd in rounds:
            for a, b in rnd:
                if self.rank in (a, b):
                    peer = b if self.rank == a else a
                    row = self._timed(size, iters, groups[(a, b)], [a, b])
                    _algbw, busbw = bandwidth_gbps(row["size_bytes"], row["time_s"], 2)
                    out["pairs"].append({"peer": peer, **row, "busbw_gbps": busbw})

    def _wait(self, work: Any, what: str, members: Sequence[int]) -> None:
        waiter = Waiter(
            members=members,
            me=self.rank,
            clock=self.clock,
            heartbeat=self.heartbeat,
            timeout_s=self.timeout_s,
        )
        block = work_block(work) if self.backend == "gloo" else None
        self.pending = work
        waiter.wait(work.is_completed, what, block)
        self.pending = None
        work.wait()

    def _sync(self) -> None:
        if self.backend == "nccl":
            self.torch.cuda.synchronize(self.device)

    def _timed(self, size: int, iters: int, group: Any, ranks: list[int]) -> dict[str, Any]:
        """A warm-up, then ``iters`` timed all-reduces of the pattern, each one verified."""
        torch, numel = self.torch, max(1, size // _BYTES_PER_ELEMENT)
        mine = _pattern(torch, numel, self.rank, self.device)
        expected = _expected(torch, numel, ranks, self.device)
        buf = mine.clone()
        what = f"rack all-reduce {size} B" if group is None else f"pair all-reduce {ranks}"
        self._wait(self.dist.all_reduce(buf, group=group, async_op=True), what, ranks)
        elapsed, wrong = 0.0, 0
        for _ in range(iters):
            buf.copy_(mine)
            self._sync()
            start = self.clock()
            if self.delay_s:
                time.sleep(self.delay_s)
            self._wait(self.dist.all_reduce(buf, group=group, async_op=True), what, ranks)
            self._sync()
            elapsed += self.clock() - start
            wrong += int((buf != expected).sum().item())
        return {"size_bytes": numel * _BYTES_PER_ELEMENT, "time_s": elapsed / iters, "wrong": wrong}


@dataclass(frozen=True)
class DeviceRank:
    """What one device's process of the all-reduce over every device needs (picklable)."""

    addr: str  # the rendezvous store (torchrun's MASTER_ADDR:MASTER_PORT)
    port: int
    prefix: str  # the rack's keys in that store (burnin/rack.py)
    rank: int  # global rank: the node's first rank + the device's place on the node
    world: int  # every device of every node that takes part
    device: str  # "cpu" or "cuda:N"
    timeout_s: float
    sizes: tuple[int, ...]
    iters: int
    delay_s: float = 0.0


def device_main(spec: DeviceRank, conn: Any) -> None:
    """A device process: join the all-reduce over every device, send its :meth:`Stage.full`."""
    try:
        import torch
        import torch.distributed as dist

        if spec.device.startswith("cuda"):
            torch.cuda.set_device(torch.device(spec.device))
        else:
            torch.set_num_threads(1)  # the node's CPU ranks share its cores; gloo has its own
        timeout = timedelta(seconds=spec.timeout_s)
        client = dist.TCPStore(spec.addr, spec.port, None, False, timeout)
        store = dist.PrefixStore(spec.prefix, client)
        stage = Stage(
            store, spec.rank, spec.world, spec.device, spec.timeout_s, time.monotonic,
            lambda: None, spec.delay_s,
        )  # fmt: skip
        result = stage.full(spec.sizes, spec.iters)
    except Exception as exc:  # the store or torch failed before the stage could say so
        result = {"allreduce": [], "errors": [f"{type(exc).__name__}: {exc}"]}
    conn.send(result)
    conn.close()


def run_full(specs: Sequence[DeviceRank], ctx: Any, clock: Callable[[], float]) -> dict[str, Any]:
    """Run this node's device processes (``ctx``: a multiprocessing context) and merge their
    results: per size the slowest device's time and the sum of the wrong elements."""
    procs = []
    results: list[dict[str, Any]] = []
    errors: list[str] = []
    for spec in specs:
        recv, send = ctx.Pipe(duplex=False)
        proc = ctx.Process(
            target=device_main, args=(spec, send), name=f"burnin-rack-r{spec.rank}", daemon=True
        )
        try:
            proc.start()
        except (OSError, RuntimeError) as exc:  # the others' group times out waiting for it
            errors.append(f"{_who(spec)}: could not start its process: {exc}")
            results.append({"allreduce": []})
            continue
        finally:
            send.close()
        procs.append((spec, proc, recv))
    limit_s = max((full_stage_limit_s(s.timeout_s) for s in specs), default=0.0)
    deadline = clock() + limit_s
    for spec, proc, recv in procs:
        got, ended = None, False
        while got is None and not ended and clock() < deadline:
            if recv.poll(_POLL_S):
                try:
                    got = recv.recv()
                except EOFError:  # the process ended without sending
                    ended = True
        who = _who(spec)
        if got is None:
            if ended:
                proc.join(timeout=5.0)
                errors.append(f"{who}: ended without a result ({describe_exit(proc.exitcode)})")
            else:
                kill_group(proc)
                errors.append(f"{who}: no result within {limit_s:g} s; its process was killed")
            got = {"allreduce": [], "errors": []}
        proc.join(timeout=5.0)
        if proc.is_alive():  # stuck tearing its group down after it sent its result
            kill_group(proc)
        results.append(got)
        errors += [f"{who}: {e}" for e in got.get("errors", [])]
    return {"allreduce": merge_ranks([r["allreduce"] for r in results]), "errors": errors}


def _who(spec: DeviceRank) -> str:
    return f"{spec.device} (rank {spec.rank} of {spec.world})"


def merge_ranks(rows_by_rank: Sequence[Sequence[Mapping[str, Any]]]) -> list[dict[str, Any]]:
    """Per size, the rows of several ranks as one: the slowest time (the collective ends when
    its last rank does) and the sum of the wrong elements; only sizes every rank measured."""
    if not rows_by_rank:
        return []
    out = []
    for k in range(min(len(rows) for rows in rows_by_rank)):
        rows = [rows[k] for rows in rows_by_rank]
        out.append(
            {
                "size_bytes": rows[0]["size_bytes"],
                "time_s": max(r["time_s"] for r in rows),
                "wrong": sum(int(r["wrong"]) for r in rows),
            }
        )
    return out


def rack_records(
    results: dict[int, dict[str, Any]], names: Sequence[str], backend: str
) -> list[dict[str, Any]]:
    """rack.jsonl's rack-allreduce and node-pair records from every node's result.

    ``results`` by node index (``allreduce`` rows already merged over the node's devices,
    ``ranks`` the group's size, ``pairs`` from :meth:`Stage.pairs`), ``names`` each node's
    name. An all-reduce takes the slowest node's time and adds up the wrong elements.
    """
    nodes = len(names)
    out: list[dict[str, Any]] = []
    ranks = max((int(r.get("ranks") or 0) for r in results.values()), default=0) or nodes
    merged = merge_ranks([r.get("allreduce", []) for r in results.values()])
    for row in merged:
        algbw, busbw = bandwidth_gbps(row["size_bytes"], row["time_s"], ranks)
        out.append(
            {
                "type": "rack-allreduce",
                "ranks": ranks,
                "nodes": nodes,
                "backend": backend,
                "size_bytes": row["size_bytes"],
                "time_s": row["time_s"],
                "algbw_gbps": algbw,
                "busbw_gbps": busbw,
                "wrong": row["wrong"],
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

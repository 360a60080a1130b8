"""Multi-node runs under torchrun: one run id, one run directory, one merged rack report.

``torchrun --nnodes N --nproc-per-node 1 --rdzv-backend c10d ... --no-python burnin run --out
SHARED`` starts ``burnin run`` once per node. torchrun's agent sets, per worker (see
torch/distributed/elastic/agent/server/local_elastic_agent.py): ``RANK``, ``GROUP_RANK``,
``WORLD_SIZE``, ``GROUP_WORLD_SIZE``, ``LOCAL_WORLD_SIZE``, ``MASTER_ADDR``/``MASTER_PORT``
(the rendezvous store, hosted by the agent of node rank 0 when ``TORCHELASTIC_USE_AGENT_STORE``
is ``True``, torch/distributed/rendezvous.py ``_create_c10d_store``) and
``TORCHELASTIC_RUN_ID``. With one process per node, ``RANK`` is the node's rank. Through that
store the rank-0 node makes the run id and the others read it; each node claims its name
(a duplicate is refused), announces its plan, beats a heartbeat counter while it runs and
writes ``SHARED/<run-id>/nodes/<node>/`` with its own ``manifest.json``. When its per-node
stage is over each node marks ``done``; the rank-0 node waits for every node until the
longest planned node (its start offset plus its plan) plus :data:`MARGIN_S` has passed, or
until a node's heartbeat has not moved for ``watchdog.timeout_s``: such a node is ``lost``,
its cards (from its announced plan, else from ``--expect-gpus``) get ``lost`` verdicts. The
nodes that finished then run the cross-node stage (burnin/rack_collectives.py: an all-reduce
over every device of those nodes, one process per device meeting through the same store,
then node pairs from the parent processes) and the rank-0 node writes ``rack.jsonl``, the
merged ``manifest.json``, ``verdicts.jsonl`` and the reports at the run directory's root;
every other node writes its own node report in its directory.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from burnin.errors import InputError
from burnin.store import RACK_FILE, JsonlWriter, RunStore, merge_runs, new_run_id

log = logging.getLogger("burnin")

# Seconds past the longest planned node (start offset + plan) before the rank-0 node stops
# waiting: the workers' own grace, the reports and a slow shared file system fit well inside.
MARGIN_S = 120.0
HEARTBEAT_S = 1.0  # how often a node bumps its heartbeat counter in the store
_POLL_S = 0.2
# Cross-node stage sizes (bytes) and timed iterations per size: up to 256 MiB on GPUs (where
# busbw reaches its plateau, nccl-tests' usual -e), a few MiB on the CPU fallback.
GPU_SIZES = (1 << 20, 16 << 20, 256 << 20)
CPU_SIZES = (64 << 10, 1 << 20, 4 << 20)
ITERS = 5
STORE_PREFIX = "burnin/"  # every key the rack keeps in the rendezvous store starts so


@dataclass(frozen=True)
class RackEnv:
    rank: int
    world: int
    master_addr: str
    master_port: int
    agent_store: bool


def rack_env(env: Mapping[str, str]) -> RackEnv | None:
    """This node's place in a torchrun multi-node run; None for a single node.

    Raises:
        InputError: torchrun's variables are incomplete, or it starts several processes per
            node (burnin drives every GPU of its node from one process).
    """
    if "TORCHELASTIC_RUN_ID" not in env:
        return None
    try:
        world, rank = int(env["WORLD_SIZE"]), int(env["RANK"])
        local = int(env.get("LOCAL_WORLD_SIZE", "1"))
        addr, port = env["MASTER_ADDR"], int(env["MASTER_PORT"])
    except (KeyError, ValueError) as exc:
        raise InputError(f"torchrun's environment is incomplete or malformed: {exc}") from None
    if world <= 1:
        return None
    if local != 1:
        raise InputError(
            f"torchrun started {local} processes on this node: run burnin with "
            "--nproc-per-node 1 (one burnin per node drives all of its GPUs)"
        )
    return RackEnv(rank, world, addr, port, env.get("TORCHELASTIC_USE_AGENT_STORE") == "True")


class Rack:
    """One node's side of a multi-node run (see the module docstring)."""

    def __init__(self, renv: RackEnv, runtime: Any, config: Any) -> None:
        self.env, self.runtime, self.config = renv, runtime, config
        self.rank = renv.rank
        self.clock = runtime.monotonic
        self.beat_timeout_s = float(config.watchdog.timeout_s)
        # Test seam (a slow link), set only by tests through the Runtime; 0 in production.
        self.delay_s = float(getattr(runtime, "rack_link_delay_s", 0.0) or 0.0)
        self._stop = threading.Event()
        self._beater: threading.Thread | None = None
        self.store_error = ""  # why the rendezvous store cannot be read, once it cannot
        self.t0 = self.clock()

    def _client(self, timeout_s: float) -> Any:
        import torch.distributed as dist

        is_master = self.rank == 0 and not self.env.agent_store
        store = dist.TCPStore(
            self.env.master_addr,
            self.env.master_port,
            self.env.world,
            is_master,
            timedelta(seconds=timeout_s),
            multi_tenant=is_master,
        )
        return dist.PrefixStore(STORE_PREFIX, store)

    def open_store(self, plan: Any) -> RunStore:
        """Agree on the run id, claim this node's name, announce the plan, start beating."""
        self.store = self._client(self.beat_timeout_s + MARGIN_S)
        if self.rank == 0:
            self.store.set("run_id", new_run_id(plan.node))
        run_id = self.store.get("run_id").decode()
        owner = self.store.compare_set(f"name/{plan.node}", "", str(self.rank)).decode()
        if owner != str(self.rank):
            raise InputError(
                f"node name {plan.node!r} is taken by rank {owner} of this run: give each node "
                "its own --node-name"
            )
        entries = [
            {"node": i.node, "device": i.device.index, "kind": i.device.kind, "kernels": []}
            for i in plan.items
        ]
        end_s = (
            plan.placement.node_offset_s
            + max((i.start_offset_s + i.duration_s) for i in plan.items)
            if plan.items
            else 0.0
        )
        self.store.set(
            f"node/{self.rank}", json.dumps({"name": plan.node, "plan": entries, "end_s": end_s})
        )
        self.node = plan.node
        self._beater = threading.Thread(target=self._beat, name="burnin-rack-beat", daemon=True)
        self._beater.start()
        store = RunStore.join(Path(self.config.run.out_dir), run_id, plan.node)
        self.run_dir = store.path
        return store

    def _beat(self) -> None:
        client = self._client(HEARTBEAT_S * 10)  # a store client of its own, for its thread
        while not self._stop.wait(HEARTBEAT_S):
            try:
                client.add(f"beat/{self.rank}", 1)
            except Exception as exc:  # the store went away: nothing to beat
                log.warning("rack heartbeat stopped: %s", exc)
                return

    def close(self) -> None:
        self._stop.set()
        if self._beater is not None:
            self._beater.join(timeout=HEARTBEAT_S * 5)

    def finish(self, store: RunStore, plan: Any) -> tuple[Path, dict[str, Any]]:
        """After the per-node stage: wait, run the cross-node stage, write the reports.

        Returns (the directory whose reports this node wrote, their context).
        """
        try:
            (store.node_dir(self.node) / "done").write_text(f"{self.rank}\n", encoding="utf-8")
            self.store.set(f"done/{self.rank}", self.node)
            if self.rank == 0:
                live, errors = self._wait_nodes()
                if not self.store_error:
                    self.store.set("live", json.dumps(live))
            else:
                live, errors = self._read_live(), []
            if self.rank in live and len(live) > 1:
                mine = json.dumps(self._stage(plan, live))
                try:
                    self.store.set(f"result/{self.rank}", mine)
                except Exception as exc:  # the store's host ended first: rank 0 reports us
                    log.error("could not hand in the cross-node result: %s", exc)
            if self.rank != 0:
                return self._node_report(store)
            return self._rack_report(store, live, errors)
        finally:
            self.close()

    def _stage(self, plan: Any, live: list[int]) -> dict[str, Any]:
        """This node's part of the cross-node stage (burnin/rack_collectives.py): one process
        per device in the all-reduce over every device of the live nodes, then the node pairs
        from this process on the node's first device."""
        from burnin.rack_collectives import DeviceRank, Stage, rank_offsets, run_full
        from burnin.supervisor import mp_context

        announced = self._announced()
        counts = [len(announced.get(r, {}).get("plan", [])) for r in live]
        me = live.index(self.rank)
        counts[me] = len(plan.items)
        devices = [i.device.torch_device for i in plan.items]
        first_device = devices[0] if devices else "cpu"
        sizes = CPU_SIZES if first_device == "cpu" else GPU_SIZES
        first = rank_offsets(counts)[me]
        specs = [
            DeviceRank(
                addr=self.env.master_addr,
                port=self.env.master_port,
                prefix=STORE_PREFIX,
                rank=first + k,
                world=sum(counts),
                device=device,
                timeout_s=self.beat_timeout_s,
                sizes=sizes,
                iters=ITERS,
                delay_s=self.delay_s,
            )
            for k, device in enumerate(devices)
        ]
        full = run_full(specs, mp_context(), self.clock)
        stage = Stage(
            self.store, me, len(live), first_device, self.beat_timeout_s, self.clock,
            lambda: None, self.delay_s,
        )  # fmt: skip
        pairs = stage.pairs(sizes[-1], ITERS)
        return {
            "allreduce": full["allreduce"],
            "pairs": pairs["pairs"],
            "errors": full["errors"] + pairs["errors"],
            "ranks": sum(counts),
            "backend": stage.backend,
        }

    def _read_live(self) -> list[int]:
        wait_s = self._longest_end_s() + MARGIN_S + self.beat_timeout_s
        try:
            self.store.wait(["live"], timedelta(seconds=wait_s))
            return [int(r) for r in json.loads(self.store.get("live"))]
        except Exception as exc:  # rank 0 died: this node reports alone
            log.error("rank 0 never listed the nodes that finished: %s", exc)
            return []

    def _announced(self) -> dict[int, dict[str, Any]]:
        """What each rank announced: through the store, else from the node manifests that
        the shared run directory holds (the store is gone once its host died)."""
        out: dict[int, dict[str, Any]] = {}
        if not self.store_error:
            try:
                for r in range(self.env.world):
                    if self.store.check([f"node/{r}"]):
                        out[r] = json.loads(self.store.get(f"node/{r}"))
                return out
            except Exception as exc:  # the store's host died: read the disk
                self.store_error = f"the rendezvous store went away ({exc})"
        for path in sorted(self.run_dir.glob("nodes/*/manifest.json")):
            try:
                manifest = json.loads(path.read_text(encoding="utf-8"))
                rank = int(manifest["placement"]["rank"])
            except (OSError, ValueError, KeyError, TypeError):
                continue
            out[rank] = {"name": path.parent.name, "plan": manifest.get("plan", [])}
        return out

    def _longest_end_s(self) -> float:
        return max((a.get("end_s") or 0.0 for a in self._announced().values()), default=0.0)

    def _poll(
        self, pending: set[int], seen: dict[int, tuple[int, float]], lost: dict[int, str]
    ) -> None:
        """One look at every pending node: done, beating, or lost."""
        deadline = self.t0 + self._longest_end_s() + MARGIN_S
        now = self.clock()
        for r in sorted(pending):
            if self.store.check([f"done/{r}"]):
                pending.discard(r)
                continue
            beat = self.store.add(f"beat/{r}", 0)
            if beat != seen[r][0]:
                seen[r] = (beat, now)
            elif now - seen[r][1] > self.beat_timeout_s:
                lost[r] = f"no heartbeat for {now - seen[r][1]:.0f} s (watchdog.timeout_s)"
            if r not in lost and now > deadline:
                lost[r] = f"not finished {MARGIN_S:.0f} s past its planned end"
            if r in lost:
                pending.discard(r)

    def _wait_nodes(self) -> tuple[list[int], list[dict[str, Any]]]:
        """The ranks that finished, and a rack-error per node that did not (lost)."""
        pending = set(range(self.env.world)) - {self.rank}
        seen = {r: (-1, self.clock()) for r in pending}
        lost: dict[int, str] = {}
        while pending:
            try:
                self._poll(pending, seen, lost)
            except Exception as exc:  # the store's host (a torchrun agent) died with its node
                where = f"{self.env.master_addr}:{self.env.master_port}"
                self.store_error = (
                    f"the rendezvous store at {where} went away ({type(exc).__name__}: {exc})"
                )
                log.error("%s", self.store_error)
                lost.update((r, self.store_error) for r in pending)
                pending.clear()
            if pending:
                time.sleep(_POLL_S)
        announced = self._announced()
        errors = []
        for r, why in sorted(lost.items()):
            info = announced.get(r, {})
            name = info.get("name") or f"rank{r}"
            devices = [e["device"] for e in info.get("plan", [])] or list(
                range(int(self.config.run.expect_gpus))
            )
            errors.append(
                {
                    "type": "rack-error",
                    "node": name,
                    "message": f"rank {r}: {why}",
                    "lost": True,
                    "devices": devices,
                }
            )
            log.error("node %s (rank %d) lost: %s", name, r, why)
        live = sorted(set(range(self.env.world)) - set(lost))
        return live, errors

    def _node_report(self, store: RunStore) -> tuple[Path, dict[str, Any]]:
        from burnin.reports import judge_and_render

        node_dir = store.node_dir(self.node)
        load = functools.partial(merge_runs, [node_dir], out=node_dir)
        return node_dir, judge_and_render(node_dir, strict=self.config.run.strict, load=load)

    def _rack_report(
        self, store: RunStore, live: list[int], errors: list[dict[str, Any]]
    ) -> tuple[Path, dict[str, Any]]:
        from burnin.rack_collectives import rack_records
        from burnin.reports import judge_and_render
        from burnin.verdicts.limits import read_limits
        from burnin.verdicts.network import SlowLinkThresholds
        from burnin.verdicts.rack import pair_busbw, slow_pairs

        announced = self._announced()
        names = [announced.get(r, {}).get("name") or f"rank{r}" for r in live]
        results: dict[int, dict[str, Any]] = {}
        backend = "gloo"
        for k, r in enumerate(live if len(live) > 1 else []):
            try:
                self.store.wait([f"result/{r}"], timedelta(seconds=self.beat_timeout_s * 2))
                got = json.loads(self.store.get(f"result/{r}"))
            except Exception as exc:  # a node that died in the stage
                errors.append(
                    {
                        "type": "rack-error",
                        "node": names[k],
                        "message": f"no cross-node result: {exc}",
                    }
                )
                continue
            backend = got.pop("backend", backend)
            for message in got.get("errors", []):
                errors.append({"type": "rack-error", "node": names[k], "message": message})
            results[k] = got
        records = rack_records(results, names, backend) if results else []
        busbw = pair_busbw(records)
        limits = read_limits(SlowLinkThresholds, self.config.to_dict().get("thresholds", {}))
        slow, _suspects = slow_pairs(busbw, limits.slow_link_warn_ratio)
        best = max(
            (r["busbw_gbps"] for r in records if r["type"] == "rack-allreduce"), default=None
        )
        all_names = [announced.get(r, {}).get("name") or f"rank{r}" for r in range(self.env.world)]
        summary = {
            "type": "rack-summary",
            "nodes": all_names,
            "busbw_gbps": best,
            "slow_pairs": [list(p) for p in slow],
        }
        out = JsonlWriter(store.path / RACK_FILE)
        try:
            for record in [*records, *errors, summary]:
                out.write(record)
        finally:
            out.close()
        merged = merge_runs([store.path], out=store.path)
        have = {(e.get("node"), e.get("device")) for e in merged.manifest.get("plan", [])}
        kind = merged.manifest.get("plan", [{}])[0].get("kind", "cuda")
        for e in errors:
            for d in e.get("devices", []):
                if (e["node"], d) not in have:
                    merged.manifest["plan"].append(
                        {"node": e["node"], "device": d, "kind": kind, "kernels": [], "faults": []}
                    )
        merged.manifest["nodes"] = all_names
        merged.manifest["rack"] = {
            "nodes": all_names,
            "lost": [e["node"] for e in errors if e.get("lost")],
        }
        RunStore(store.path).write_manifest(merged.manifest)
        return store.path, judge_and_render(store.path, strict=self.config.run.strict)

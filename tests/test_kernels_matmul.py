"""Matmul kernel in-process on the CPU: the checks, every product's digest, the fault seam,
dtypes, config validation and timing.

Runs are bounded by a step budget (``should_stop`` after N batches), not by wall time, so the
number of verifications and the seam's seeded decisions are the same on a loaded machine.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner
from fakes import FakeClock

from burnin.cli import cli
from burnin.errors import ConfigError
from burnin.kernels import bitcheck
from burnin.kernels.base import DeviceSeam, KernelContext
from burnin.kernels.matmul import Matmul
from burnin.kernels.matmul_data import freivalds_bad_rows
from burnin.runtime import Runtime
from burnin.sim.faults import make_fault
from burnin.sim.seam import FaultySeam
from burnin.sim.telemetry import with_faults


def run_matmul(
    faults: tuple = (),
    batches: int | None = 20,
    seam: DeviceSeam | None = None,
    device: str = "cpu",
    duration_s: float = 3600.0,
    tick_s: float = 0.0,
    **config: Any,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run for exactly ``batches`` timed batches (None: for ``duration_s`` of a clock that
    advances ``tick_s`` per read, whatever the machine's speed); (result, records)."""
    records: list[dict[str, Any]] = []
    beats = [0]

    def beat() -> None:
        beats[0] += 1

    config = {"cpu_size": 48, "size": 256, "batch_s": 0.002, "warmup_steps": 1} | config
    ctx = KernelContext(
        device=torch.device(device),
        device_index=0,
        node="test",
        config=Matmul.Config(**config),
        duration_s=duration_s,
        seed=1234,
        seam=seam or FaultySeam(faults, seed=7),
        emit=records.append,
        heartbeat=beat,
        # One heartbeat after setup, then one per batch.
        should_stop=lambda: batches is not None and beats[0] > batches,
        monotonic=FakeClock(tick_s),
    )
    return Matmul().run(ctx), records


def verifies(records: list[dict[str, Any]], check: str | None = None) -> list[dict[str, Any]]:
    return [
        r for r in records if r["type"] == "verify" and (check is None or r.get("check") == check)
    ]


def test_healthy_device_passes_every_check_with_zero_wrong() -> None:
    result, records = run_matmul(batches=12)
    assert result["wrong_elements"] == 0 and result["failed_verifications"] == 0
    assert result["verifications"] == 12
    assert not verifies(records)
    assert result["metrics"]["matmul_tflops"] > 0
    assert result["metrics"]["matmul_fp32_tflops"] == result["metrics"]["matmul_tflops"]
    digest = result["cross"]["fp32"]
    assert len(digest["sha256"]) == 64 and len(digest["probe"]) == 16
    assert result["env"]["kind"] == "cpu" and result["size"] == 48
    # Progress records carry the per-window TFLOP/s the stability check reads.
    assert any(r["type"] == "progress" and r["tflops"] > 0 for r in records)


def test_every_product_is_verified_and_the_newest_bit_for_bit() -> None:
    result, _ = run_matmul(batches=6)
    # The reference is made before the timed loop; each verification compares the newest
    # product with it bit for bit, and every product's digest.
    assert result["self_checks"] == 6 and result["self_failed"] == 0
    metrics = result["metrics"]
    assert metrics["matmul_products"] == metrics["matmul_products_verified"] == result["steps"]
    assert metrics["matmul_products"] >= 6 and result["wrong_products"] == 0


def test_constant_wrong_answer_fails_known_answer_but_passes_a_self_compare() -> None:
    result, records = run_matmul(faults=(make_fault("sdc-constant"),), batches=10)
    known = verifies(records, "known-answer")
    # Every known-answer product is wrong (one per >= 100 stress products, the first always).
    assert result["known_checks"] >= 1 and len(known) == result["known_checks"]
    # Same element, same bit every time: exactly what gpu-burn's self-compare cannot see.
    assert {(r["locations"][0]["row"], r["locations"][0]["col"]) for r in known} == {(16, 0)}
    assert {tuple(r["locations"][0]["bits"]) for r in known} == {(22,)}
    assert result["self_failed"] == 0 and not verifies(records, "self-consistency")


@pytest.mark.slow
def test_intermittent_one_in_twenty_is_caught() -> None:
    result, records = run_matmul(faults=(make_fault("sdc", {"rate": 0.05}),), batches=200)
    failed = result["failed_verifications"]
    assert result["verifications"] == 200
    assert 1 <= failed <= 30  # seeded: the seam hits about 1 verification in 20
    bad = verifies(records)
    assert bad and {r["check"] for r in bad} <= {"known-answer", "self-consistency"}
    assert all(r["wrong_elements"] >= 1 for r in bad)
    # A hit corrupts one product of its batch, anywhere in it: only the newest is still in the
    # (single) buffer to name its bits; the others are known from their digests alone. (A hit
    # on the reference itself is found in the first batch and replaced: no product is blamed.)
    products = [r for r in bad if r["check"] == "self-consistency" and "wrong_products" in r]
    assert all(r["wrong_products"] == 1 and len(r["positions"]) == 1 for r in products)
    for r in products:
        if r["positions"][0] == r["products"] - 1:
            assert r["locations"][0]["bits"] and "note" not in r
        else:
            assert "locations" not in r and "lower bound" in r["note"]
    steps = [r["step"] for r in bad]
    assert steps == sorted(steps)  # when: the step of each finding


class FirstResultCorrupted(DeviceSeam):
    """Corrupts only the first result that leaves the device: the self-consistency reference."""

    def __init__(self) -> None:
        super().__init__(seed=0)
        self.calls = 0

    def corrupt(self, result: Any, step: int, index: int = 0, count: int = 1) -> Any:
        self.calls += 1
        if self.calls != 1:  # call 1 is the reference, made before the timed loop
            return result
        bad = result.clone()
        bad.view(-1)[5] += 1
        return bad


def test_a_corrupted_reference_counts_once_and_is_replaced() -> None:
    result, records = run_matmul(seam=FirstResultCorrupted(), batches=10)
    # A third product sided with the newer result: the reference was the wrong one. It counts
    # as one failed verification, and the nine later correct results are not flagged.
    assert result["self_failed"] == 1 and result["failed_verifications"] == 1
    (found,) = verifies(records, "self-consistency")
    assert found["wrong_elements"] == 1 and "reference was the wrong result" in found["note"]


class OneProductCorrupted(DeviceSeam):
    """A card that gets one product of one batch wrong (one flipped bit), as an SDC does."""

    def __init__(self, batch: int, position: str) -> None:
        super().__init__(seed=0)
        self.batch, self.position = batch, position
        self.steps: list[int] = []  # the step of each batch seen, in order

    def corrupt(self, result: Any, step: int, index: int = 0, count: int = 1) -> Any:
        if count > 1 and (not self.steps or self.steps[-1] != step):
            self.steps.append(step)
        at = {"first": 0, "middle": count // 2, "last": count - 1}[self.position]
        if count < 3 or len(self.steps) != self.batch or index != at:
            return result
        bad = result.clone()
        bitcheck.raw_view(torch, bad.view(-1))[7] ^= 1 << 3
        return bad


@pytest.mark.slow
@pytest.mark.parametrize("position", ["first", "middle", "last"])
@pytest.mark.parametrize("verify_products", [True, False])
def test_a_wrong_product_anywhere_in_a_batch_is_caught(
    position: str, verify_products: bool
) -> None:
    seam = OneProductCorrupted(batch=3, position=position)
    # Thousands of 16³ products per batch; 3 or more unless the one product that sizes the
    # batch takes over 16 ms. One thread: no thread pool to wait for on a loaded machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result, records = run_matmul(
            seam=seam, batches=6, verify_products=verify_products, cpu_size=16, batch_s=0.05
        )
    finally:
        torch.set_num_threads(threads)
    count = result["dtypes"]["fp32"]["batch_steps"]
    assert count >= 3, "the batch must have a first, a middle and a last product"
    metrics = result["metrics"]
    if not verify_products:
        # Only the newest product of each batch is compared: the others go unseen, and the
        # metrics say so.
        assert metrics["matmul_products_verified"] == 0 < metrics["matmul_products"]
        assert result["failed_verifications"] == (position == "last")
        return
    assert metrics["matmul_products"] == metrics["matmul_products_verified"] == 6 * count
    assert result["failed_verifications"] == result["self_failed"] == 1
    (found,) = verifies(records, "self-consistency")
    at = {"first": 0, "middle": count // 2, "last": count - 1}[position]
    assert (found["positions"], found["wrong_products"], found["products"]) == ([at], 1, count)
    assert found["step"] == seam.steps[2]
    if position == "last":  # still in the buffer: its wrong element is named
        assert found["wrong_elements"] == 1 and found["locations"][0]["bits"] == [3]
    else:  # overwritten by later products: known from its digest, counted as one element
        assert found["wrong_elements"] == 1 and "lower bound" in found["note"]


def test_seam_corrupts_one_product_per_hit_and_the_same_one_on_every_read() -> None:
    seam = FaultySeam((make_fault("sdc", {"rate": 1.0}),), seed=3)
    base = torch.zeros(16, 16)
    victims = []
    for step in range(1, 30):
        hit = [i for i in range(8) if not torch.equal(seam.corrupt(base, step, i, 8), base)]
        assert len(hit) == 1
        again = seam.corrupt(base, step, hit[0], 8)
        assert torch.equal(again, seam.corrupt(base, step, hit[0], 8))  # a re-read agrees
        assert not torch.equal(seam.corrupt(base, step), base)  # one of each kind: count=1
        victims.append(hit[0])
    assert len(set(victims)) > 3  # first, middle and last products all get hit
    assert torch.equal(base, torch.zeros(16, 16))


@pytest.mark.parametrize(
    ("overrides", "bad_key"),
    [
        (['kernels.matmul.cpu_dtype="fp8"', "kernels.matmul.cpu_size=48"], None),
        (['kernels.matmul.cpu_dtype="fp8"', "kernels.matmul.cpu_size=40"], "cpu_size"),
        (['kernels.matmul.cpu_dtypes=["fp8"]', "kernels.matmul.cpu_size=24"], "cpu_size"),
        (["kernels.matmul.cpu_size=40"], None),  # no fp8: any size
        (['kernels.matmul.dtypes=["bf16", "fp8"]', "kernels.matmul.size=8192"], None),
        (['kernels.matmul.dtypes=["bf16", "fp8"]', "kernels.matmul.size=8200"], "size"),
        (['kernels.matmul.dtype="fp8"', "kernels.matmul.size=16383"], "size"),
        (["kernels.matmul.size=8200"], None),
    ],
)
def test_fp8_sizes_must_be_multiples_of_16(overrides: list[str], bad_key: str | None) -> None:
    args = ["plan", "--device", "cpu"]
    for item in overrides:
        args += ["--set", item]
    result = CliRunner().invoke(cli, args, obj=Runtime(cuda_devices=lambda: []))
    if bad_key is None:
        assert result.exit_code == 0, result.output
        return
    assert result.exit_code == 2, result.output
    assert f"'kernels.matmul.{bad_key}'" in result.output and "divisible by 16" in result.output
    with pytest.raises(ConfigError):
        Matmul.Config(**{bad_key: 40, ("cpu_dtype" if "cpu" in bad_key else "dtype"): "fp8"})


def test_fp8_stress_and_known_answer_use_fast_accumulation(monkeypatch: pytest.MonkeyPatch) -> None:
    real = torch._scaled_mm
    seen: list[bool] = []

    def recording(*args: Any, **kwargs: Any) -> Any:
        seen.append(bool(kwargs.get("use_fast_accum", False)))
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "_scaled_mm", recording)
    result, records = run_matmul(batches=3, cpu_size=32, cpu_dtype="fp8")
    if "fp8" in result["skipped_dtypes"]:
        pytest.skip(result["skipped_dtypes"]["fp8"])
    # Every product at k <= 8192 takes the fast path, the known answer included, and stays exact.
    assert seen and all(seen) and result["known_checks"] >= 1
    assert result["wrong_elements"] == 0 and not verifies(records)


@pytest.mark.parametrize("dtype", ["fp32", "tf32", "bf16", "fp16", "fp8"])
def test_every_dtype_runs_exact_on_the_cpu(dtype: str) -> None:
    result, records = run_matmul(batches=3, cpu_size=32, cpu_dtype=dtype)
    if dtype in result["skipped_dtypes"]:
        pytest.skip(result["skipped_dtypes"][dtype])
    assert result["dtype"] == dtype and result["wrong_elements"] == 0
    assert result["metrics"][f"matmul_{dtype}_tflops"] > 0
    assert not verifies(records)


def test_several_dtypes_each_get_a_metric_and_the_main_one_leads() -> None:
    # Each dtype gets half of 0.5 s; the clock reads once per batch, 1/8 s a read.
    result, _ = run_matmul(
        batches=None, duration_s=0.5, tick_s=0.125, cpu_size=32, cpu_dtype="fp32",
        cpu_dtypes=("tf32", "fp32"),
    )  # fmt: skip
    assert list(result["dtypes"]) == ["fp32", "tf32"]
    assert [run["batches"] for run in result["dtypes"].values()] == [2, 2]
    assert {"matmul_fp32_tflops", "matmul_tf32_tflops", "matmul_tflops"} <= set(result["metrics"])
    assert result["metrics"]["matmul_tflops"] == result["metrics"]["matmul_fp32_tflops"]


class FixedTimeSeam(DeviceSeam):
    """A device that reports a fixed time per batch, as the simulator's SKU model does."""

    def device_time_s(self, kernel: str, elapsed_s: float, work: float) -> float:
        return work / 5e12  # exactly 5 TFLOP/s


def test_tflops_come_from_the_device_time_of_the_seam() -> None:
    result, _ = run_matmul(batches=5, seam=FixedTimeSeam(seed=1))
    assert result["metrics"]["matmul_tflops"] == pytest.approx(5.0)
    assert result["metrics"]["matmul_tflops_cv"] == pytest.approx(0.0, abs=1e-12)


def test_freivalds_names_the_wrong_row_of_a_reference() -> None:
    gen = torch.Generator().manual_seed(3)
    a = torch.randint(-4, 5, (64, 64), generator=gen).double()
    b = torch.randint(-4, 5, (64, 64), generator=gen).double()
    c = a @ b
    assert freivalds_bad_rows(torch, a, b, c, gen) == []
    c[17, 5] += 1
    assert freivalds_bad_rows(torch, a, b, c, gen) == [17]


@pytest.mark.parametrize(
    ("value", "expected_bits"),
    [(-0.0, [31]), (1.0 + 2**-23, [0]), (float("nan"), None)],
    ids=["signed zero", "lowest mantissa bit", "nan"],
)
def test_bitcheck_compares_raw_bits(value: float, expected_bits: list[int] | None) -> None:
    want = torch.zeros(4, 4) if value == -0.0 else torch.ones(4, 4)
    got = want.clone()
    got[2, 3] = value
    # A float compare misses a sign flip of zero; the raw compare does not.
    assert not bitcheck.same_bits(torch, got, want)
    found = bitcheck.diff(torch, got, want)
    assert found["wrong_elements"] == 1 and found["wrong_rows"] == found["wrong_cols"] == 1
    loc = found["locations"][0]
    assert (loc["row"], loc["col"]) == (2, 3)
    if expected_bits is not None:
        assert loc["bits"] == expected_bits
        assert found["bit_histogram"] == {str(b): 1 for b in expected_bits}
    else:  # the store writes no NaN: a non-finite value is recorded by name
        assert loc["got"] == "nan"
    json.dumps(found, allow_nan=False)


@pytest.mark.slow
def test_end_to_end_constant_wrong_and_stuck_bit_fail_only_their_devices(tmp_path: Path) -> None:
    """Four worker processes: one card always wrong, one with a stuck memory bit."""
    faults = {
        1: (make_fault("sdc-constant"),),
        2: (make_fault("stuck-bit", {"offset_bytes": 4096, "bit": 1, "value": 1}),),
    }
    obj = Runtime(hostname="test-node", cuda_devices=lambda: [], **with_faults(faults))
    args = ["run", "--device", "cpu", "--duration", "2s", "--quiet", "--out", str(tmp_path)]
    for item in (
        "cpu.devices=4",
        'run.kernels=["matmul", "memtest"]',
        "kernels.matmul.cpu_size=64",
        "kernels.memtest.cpu_mib=1",
        "telemetry.interval_s=0.5",
    ):
        args += ["--set", item]
    result = CliRunner().invoke(cli, args, obj=obj)
    assert result.exit_code == 3, result.output
    assert "FAIL - test-node gpu1 sdc:" in result.output
    report_line = next(line for line in result.output.splitlines() if line.startswith("# report:"))
    run_dir = Path(report_line.removeprefix("# report: ")).parent
    gpus = {g["index"]: g for g in json.loads((run_dir / "report.json").read_text())["gpus"]}
    # Every stress product of every device was verified, and report.json says so.
    for gpu in gpus.values():
        metrics = gpu["metrics"]
        assert metrics["matmul_products_verified"] == metrics["matmul_products"] > 0
    sdc = {i: next(v for v in g["verdicts"] if v["check"] == "sdc") for i, g in gpus.items()}
    assert {i: v["status"] for i, v in sdc.items()} == {0: "PASS", 1: "FAIL", 2: "FAIL", 3: "PASS"}
    assert sdc[0]["observed"] == 0 and "bitwise identical to 2 peer(s)" in sdc[0]["message"]
    assert "known-answer" in sdc[1]["message"] and "odd one out" in sdc[1]["message"]
    assert "memtest" in sdc[2]["message"] and "offset 0x1000" in sdc[2]["message"]
    assert "bits [1]" in sdc[2]["message"] and sdc[2]["action"] == "rma"
    place = gpus[2]["wrong"][0]["locations"][0]["place"]
    assert place.startswith("offset 0x1000 (address 0x")
    assert place in (run_dir / "report.html").read_text()


def test_seam_shares_one_decision_per_step() -> None:
    seam = FaultySeam((make_fault("sdc", {"rate": 0.5}),), seed=11)
    base = torch.ones(8, 8)
    for step in range(40):
        first = not torch.equal(seam.corrupt(base, step), base)
        second = not torch.equal(seam.corrupt(base, step), base)
        assert first == second
    assert torch.equal(base, torch.ones(8, 8))  # the seam never writes the device's buffer


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["bf16", "fp16", "tf32", "fp32", "fp8"])
def test_gpu_dtypes_are_exact(dtype: str) -> None:
    result, records = run_matmul(device="cuda", batches=5, size=2048, dtype=dtype, dtypes=())
    if dtype in result["skipped_dtypes"]:
        pytest.skip(result["skipped_dtypes"][dtype])
    assert result["wrong_elements"] == 0 and not verifies(records)
    assert result["env"]["device_name"] and result["env"]["sm_count"] > 0


@pytest.mark.gpu
def test_gpu_fills_memory_with_rotating_buffers_and_catches_constant_faults() -> None:
    result, records = run_matmul(
        faults=(make_fault("sdc-constant"),),
        device="cuda",
        batches=6,
        size=1024,
        dtype="bf16",
        dtypes=(),
        mem_fraction=0.2,
    )
    assert result["dtypes"]["bf16"]["buffers"] > 1
    assert len(verifies(records, "known-answer")) == result["known_checks"] >= 1


def test_no_dtype_measured_means_no_throughput_figure() -> None:
    from burnin.kernels.matmul import _result

    ctx = KernelContext(device=torch.device("cpu"), device_index=0, node="test",
                        config=Matmul.Config(), duration_s=1.0, seed=1,
                        seam=DeviceSeam(seed=0), emit=lambda r: None)  # fmt: skip
    result = _result(ctx, "fp8", 64, 0, {}, {"fp8": "fp8 matmul unavailable here"})
    # 0.0 would read as a measured, dead card; no figure leaves it to the lifecycle checks.
    assert result["metrics"] == {} and "fp8" in result["skipped_dtypes"]


@pytest.mark.gpu
@pytest.mark.parametrize("mem_fraction", [0.0, 0.2])
def test_gpu_a_wrong_product_in_the_middle_of_a_batch_is_caught(mem_fraction: float) -> None:
    seam = OneProductCorrupted(batch=2, position="middle")
    result, records = run_matmul(
        seam=seam, device="cuda", batches=4, size=1024, dtype="bf16", dtypes=(),
        mem_fraction=mem_fraction,
    )  # fmt: skip
    run = result["dtypes"]["bf16"]
    count, buffers = run["batch_steps"], run["buffers"]
    assert count >= 3, "the batch must have a middle product"
    metrics = result["metrics"]
    assert metrics["matmul_products"] == metrics["matmul_products_verified"] == 4 * count
    assert result["failed_verifications"] == result["self_failed"] == 1
    (found,) = verifies(records, "self-consistency")
    assert found["positions"] == [count // 2] and found["wrong_products"] == 1
    if count - count // 2 <= buffers:  # still in its buffer: the wrong element is named
        assert found["wrong_elements"] == 1 and found["locations"][0]["bits"] == [3]
    else:  # one buffer: overwritten, known from its digest
        assert found["wrong_elements"] == 1 and "lower bound" in found["note"]


@pytest.mark.gpu
def test_gpu_every_product_of_a_healthy_batch_is_verified() -> None:
    result, records = run_matmul(device="cuda", batches=5, size=2048, dtype="bf16", dtypes=())
    metrics = result["metrics"]
    assert metrics["matmul_products"] == metrics["matmul_products_verified"] > 5
    assert result["wrong_elements"] == 0 and result["wrong_products"] == 0
    assert not verifies(records)


@pytest.mark.gpu
def test_gpu_fp8_runs_exact_on_the_fast_accumulation_path(monkeypatch: pytest.MonkeyPatch) -> None:
    major, minor = torch.cuda.get_device_capability()
    if (major, minor) < (8, 9):
        pytest.skip(
            f"fp8 tensor cores need compute capability 8.9 or later (this GPU: {major}.{minor})"
        )
    real = torch._scaled_mm
    fast: list[bool] = []

    def recording(*args: Any, **kwargs: Any) -> Any:
        fast.append(bool(kwargs.get("use_fast_accum", False)))
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "_scaled_mm", recording)
    result, records = run_matmul(device="cuda", batches=5, size=4096, dtype="fp8", dtypes=())
    if "fp8" in result["skipped_dtypes"]:
        pytest.skip(result["skipped_dtypes"]["fp8"])
    # The known answer at k = 4096 <= 8192 is exact on the fast path too.
    assert fast and all(fast) and result["known_checks"] >= 1
    assert result["wrong_elements"] == 0 and not verifies(records)
    metrics = result["metrics"]
    assert metrics["matmul_products"] == metrics["matmul_products_verified"]
    assert metrics["matmul_fp8_tflops"] > 0

"""membw and memtest in-process on the CPU: bandwidth, data checks, injected memory faults.

Deadlines come from a :class:`FakeClock` that advances a fixed step per read, so how many
passes or batches run is the same on a fast, a slow or a loaded machine.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from fakes import FakeClock

from burnin.kernels.base import DeviceSeam, KernelContext
from burnin.kernels.membw import Membw
from burnin.kernels.memtest import Memtest, _passes
from burnin.sim.faults import make_fault
from burnin.sim.seam import FaultySeam


def run(
    kernel: Any,
    config: Any,
    faults: tuple = (),
    duration_s: float = 0.2,
    device: str = "cpu",
    tick_s: float = 0.01,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run ``kernel`` on a clock that advances ``tick_s`` per read (the deadline comes after
    ``duration_s / tick_s`` reads, whatever the machine's speed)."""
    records: list[dict[str, Any]] = []
    ctx = KernelContext(
        device=torch.device(device),
        device_index=0,
        node="test",
        config=config,
        duration_s=duration_s,
        seed=1234,
        seam=FaultySeam(faults, seed=5),
        emit=records.append,
        monotonic=FakeClock(tick_s),
    )
    return kernel().run(ctx), records


def test_membw_measures_copy_and_triad_and_checks_the_data() -> None:
    result, records = run(Membw, Membw.Config(cpu_size_mib=4, batch_s=0.01))
    m = result["metrics"]
    assert m["membw_copy_gbps"] > 0 and m["membw_triad_gbps"] > 0
    assert m["membw_gbps"] == max(m["membw_copy_gbps"], m["membw_triad_gbps"])
    assert result["verifications"] >= 1 and result["wrong_elements"] == 0
    assert not [r for r in records if r["type"] == "verify"]


class Halved(DeviceSeam):
    def device_time_s(self, kernel: str, elapsed_s: float, work: float) -> float:
        return work / (100e9 if kernel == "membw" else 1.0)  # a 100 GB/s card


def test_membw_reports_the_seam_device_time() -> None:
    records: list[dict[str, Any]] = []
    ctx = KernelContext(
        device=torch.device("cpu"),
        device_index=0,
        node="test",
        config=Membw.Config(cpu_size_mib=1, batch_s=0.005),
        duration_s=0.05,
        seed=1,
        seam=Halved(seed=1),
        emit=records.append,
        monotonic=FakeClock(0.01),
    )
    result = Membw().run(ctx)
    assert result["metrics"]["membw_copy_gbps"] == pytest.approx(100.0)


def test_memtest_covers_every_pattern_and_passes_a_healthy_region() -> None:
    names = [name for name, _ in _passes(Memtest.Config().patterns, 0)]
    # 4 constants, 32 walking-one passes, address and its complement, random.
    assert len(names) == len(set(names)) == 39
    # A run past its deadline stops once every pattern has run: 8 passes, not a whole round.
    head = [name for name, _ in _passes(Memtest.Config().patterns, 0, head_only=True)]
    assert head == names[:8] and head[4] == "walking-ones bit 0" and head[-1] == "random seed 0"
    result, _ = run(Memtest, Memtest.Config(cpu_mib=1), duration_s=0.0)
    assert result["metrics"]["memtest_passes"] == 8 and result["rounds"] == 0
    assert result["wrong_elements"] == 0
    assert result["metrics"]["memtest_gib"] == pytest.approx(1 / 1024)
    # With time to spare it completes whole rounds. The clock moves 1/64 s per read (exact in
    # binary) and the deadline is 100 reads away: read 1 sets it, then one read per pass from
    # the 8th and one per round: reads 2-34 in round 1, 35-74 in round 2, and read 101 after
    # the 27th pass of round 3.
    result, _ = run(Memtest, Memtest.Config(cpu_mib=1), duration_s=100 / 64, tick_s=1 / 64)
    assert result["rounds"] == 2 and result["metrics"]["memtest_passes"] == 2 * 39 + 27
    assert result["wrong_elements"] == 0


@pytest.mark.parametrize(
    ("offset_bytes", "bit", "value", "word_offset", "word_bit", "first_pattern"),
    [
        (4096, 0, 1, 4096, 0, "zeros 0x00000000"),  # stuck at 1: seen where a 0 is written
        (8194, 3, 1, 8192, 19, "zeros 0x00000000"),  # byte 2 of its word: bit 16 + 3
        (12345, 7, 0, 12344, 15, "ones 0xffffffff"),  # stuck at 0: seen where a 1 is written
    ],
)
def test_memtest_finds_a_stuck_bit_and_reports_its_address(
    offset_bytes: int, bit: int, value: int, word_offset: int, word_bit: int, first_pattern: str
) -> None:
    fault = make_fault("stuck-bit", {"offset_bytes": offset_bytes, "bit": bit, "value": value})
    result, records = run(Memtest, Memtest.Config(cpu_mib=1), (fault,), duration_s=0.01)
    bad = [r for r in records if r["type"] == "verify"]
    assert result["failed_verifications"] == len(bad) > 0
    assert bad[0]["pattern"] == first_pattern
    for record in bad:
        # One word, always the same: the address and bit a technician can act on.
        assert record["wrong_elements"] == 1
        loc = record["locations"][0]
        if record["word_bytes"] == 4:
            assert (loc["offset_bytes"], loc["bits"]) == (word_offset, [word_bit])
        else:  # the address pattern uses 64-bit words
            word64 = offset_bytes // 8 * 8
            bit64 = (offset_bytes - word64) * 8 + bit
            assert (loc["offset_bytes"], loc["bits"]) == (word64, [bit64])
        assert int(loc["address"], 16) == int(result["base_address"], 16) + loc["offset_bytes"]
    assert result["wrong_elements"] == sum(r["wrong_elements"] for r in bad)


def test_a_stuck_bit_past_a_small_region_wraps_into_it() -> None:
    # 8 MiB + 4096 into a 1 MiB region: the fault lies at 4096 of the tested region, not outside
    # it, or a scenario's stuck bit would go unseen on a small (CPU) region and the card pass.
    fault = make_fault("stuck-bit", {"offset_bytes": 8 * 2**20 + 4096, "bit": 0, "value": 1})
    result, records = run(Memtest, Memtest.Config(cpu_mib=1), (fault,), duration_s=0.01)
    bad = [r for r in records if r["type"] == "verify" and r["word_bytes"] == 4]
    assert result["failed_verifications"] > 0
    assert bad and bad[0]["locations"][0]["offset_bytes"] == 4096


def test_memtest_catches_intermittent_bit_flips() -> None:
    fault = make_fault("bitflip", {"rate": 0.1})
    result, records = run(Memtest, Memtest.Config(cpu_mib=1), (fault,), duration_s=0.01)
    bad = [r for r in records if r["type"] == "verify"]
    assert 0 < len(bad) < result["verifications"]
    assert all(len(r["locations"][0]["bits"]) == 1 for r in bad)


def test_read_back_without_faults_is_the_same_tensor() -> None:
    seam = FaultySeam((), seed=1)
    words = torch.arange(16, dtype=torch.int32)
    assert seam.read_back(words, 0, 64, pass_id=0) is words


@pytest.mark.gpu
def test_gpu_memtest_and_membw() -> None:
    result, _ = run(Memtest, Memtest.Config(mem_fraction=0.05), duration_s=0.01, device="cuda")
    assert result["wrong_elements"] == 0 and result["region_bytes"] > 0
    result, _ = run(Membw, Membw.Config(size_mib=256), duration_s=0.5, device="cuda")
    assert result["metrics"]["membw_gbps"] > 50 and result["wrong_elements"] == 0

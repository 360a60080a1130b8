"""Device memory test: write known patterns over a share of free memory, read back, compare.

Patterns, in the memtest86 / cuda_memtest tradition: all zeros, all ones, 0xAA and 0x55
(alternating bits, both phases), walking ones (32 passes, one bit position each), address in
address and its complement (each 64-bit word holds its own index: catches address-line faults
that a constant pattern cannot), and a seeded pseudo-random pattern that changes every round.
A round runs each pattern once first (walking ones at bit 0), then the other 31 walking-ones
positions, and the kernel may stop at its deadline once every pattern has run: 8 passes rather
than 39, so a short run or a slow host cannot overrun the plan by a whole round.
Each pass writes the whole region, then reads it back chunk by chunk through the device seam
(where a stuck or flipped bit enters in tests) and counts bad words on the device, with one
synchronisation per pass. Only a failing pass is scanned again to name addresses and bits:
``offset_bytes`` in the region, the word's virtual ``address`` and the XOR of the bits.
The deadline reads the context's injected clock (``ctx.monotonic``), never the host's, so how
many passes a test sees does not depend on the machine; ``memtest_gbps`` is timed on the same
clock (the host's on a real card, the modelled time on a simulated one).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from burnin.kernels import bitcheck
from burnin.kernels.base import KernelContext, share_field
from burnin.kernels.registry import register

Pattern = Literal["zeros", "ones", "0xaa", "0x55", "walking-ones", "address", "random"]
_CONSTANTS = {"zeros": 0x00000000, "ones": 0xFFFFFFFF, "0xaa": 0xAAAAAAAA, "0x55": 0x55555555}
# splitmix64 constants (Steele, Lea & Flood 2014), as signed 64-bit integers for torch.
_GOLDEN = 0x9E3779B97F4A7C15 - (1 << 64)
_MIX = 0xBF58476D1CE4E5B9 - (1 << 64)


@register("memtest")
class Memtest:
    """Pattern write/verify over device memory; reports bad words with address and bits."""

    @dataclass(frozen=True, kw_only=True)
    class Config:
        share: float = share_field()
        # Share of free GPU memory tested; the rest leaves room for the chunk temporaries.
        mem_fraction: float = field(default=0.8, metadata={"min": 0.0001, "max": 0.95})
        cpu_mib: int = field(default=16, metadata={"min": 1, "max": 1 << 16})
        chunk_mib: int = field(default=64, metadata={"min": 1, "max": 4096})
        patterns: tuple[Pattern, ...] = (
            "zeros",
            "ones",
            "0xaa",
            "0x55",
            "walking-ones",
            "address",
            "random",
        )

    def run(self, ctx: KernelContext) -> dict[str, Any]:
        import torch

        cfg: Memtest.Config = ctx.config
        if ctx.is_cuda:
            torch.cuda.empty_cache()
            free_b, _total = torch.cuda.mem_get_info(ctx.device)
            region_b = int(free_b * cfg.mem_fraction)
        else:
            region_b = cfg.cpu_mib << 20
        region_b -= region_b % 8
        words32 = torch.empty(region_b // 4, dtype=torch.int32, device=ctx.device)
        test = _Region(torch, ctx, words32, max(1, (cfg.chunk_mib << 20) // 8))
        t0 = ctx.monotonic()  # the device's clock (a simulated card's modelled time)
        deadline = t0 + ctx.duration_s
        passes = failed = bad_total = rounds = 0
        finished = False
        every_pattern = len(_passes(cfg.patterns, ctx.seed, head_only=True))
        while not finished:
            for name, spec in _passes(cfg.patterns, ctx.seed + rounds):
                bad = test.write_verify(name, spec, passes)
                passes += 1
                failed += bool(bad)
                bad_total += bad
                ctx.heartbeat()
                # Every pattern runs at least once, whatever the deadline.
                late = passes >= every_pattern and ctx.monotonic() >= deadline
                if ctx.should_stop() or late:
                    finished = True
                    break
            else:
                rounds += 1
                ctx.emit({"type": "progress", "kernel": "memtest", "rounds": rounds})
                finished = ctx.monotonic() >= deadline or ctx.should_stop()
        elapsed_s = ctx.monotonic() - t0
        return {
            "type": "result",
            "kernel": "memtest",
            "region_bytes": region_b,
            "base_address": f"0x{words32.data_ptr():x}",
            "rounds": rounds,
            "metrics": {
                "memtest_gib": region_b / (1 << 30),
                "memtest_passes": passes,
                "memtest_bad_words": bad_total,
                # Each pass writes and reads the region once.
                "memtest_gbps": 2.0 * region_b * passes / elapsed_s / 1e9,
            },
            "verifications": passes,
            "failed_verifications": failed,
            "wrong_elements": bad_total,
        }


def _signed(value: int, bits: int) -> int:
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def _passes(
    patterns: tuple[str, ...], seed: int, head_only: bool = False
) -> list[tuple[str, tuple[Any, ...]]]:
    """(name, spec) of every pass of one round, in order: each pattern once, then the rest
    of walking ones (``head_only``: just the first part)."""
    head: list[tuple[str, tuple[Any, ...]]] = []
    tail: list[tuple[str, tuple[Any, ...]]] = []
    for pattern in patterns:
        if pattern in _CONSTANTS:
            head.append((f"{pattern} 0x{_CONSTANTS[pattern]:08x}", ("const", _CONSTANTS[pattern])))
        elif pattern == "walking-ones":
            walk = [(f"walking-ones bit {bit}", ("const", 1 << bit)) for bit in range(32)]
            head.append(walk[0])
            tail.extend(walk[1:])
        elif pattern == "address":
            head += [("address", ("address", False)), ("address complement", ("address", True))]
        else:
            head.append((f"random seed {seed}", ("random", seed)))
    return head if head_only else head + tail


class _Region:
    """The tested memory and how to write, expect and check one pass, chunk by chunk."""

    def __init__(self, torch: Any, ctx: KernelContext, words32: Any, chunk64: int) -> None:
        self.torch, self.ctx = torch, ctx
        self.words32, self.words64 = words32, words32.view(torch.int64)
        self.region_b = words32.numel() * 4
        self.chunk64 = chunk64  # chunk length in 64-bit words

    def _view(self, spec: tuple[Any, ...]) -> Any:
        return self.words64 if spec[0] == "address" else self.words32

    def _chunks(self, view: Any) -> Iterator[tuple[int, int]]:
        step = self.chunk64 * 8 // view.element_size()
        for start in range(0, view.numel(), step):
            yield start, min(start + step, view.numel())

    def _expected(self, spec: tuple[Any, ...], start: int, end: int) -> Any:
        torch, dev = self.torch, self.ctx.device
        kind = spec[0]
        if kind == "const":
            return torch.full((end - start,), _signed(spec[1], 32), dtype=torch.int32, device=dev)
        idx = torch.arange(start, end, dtype=torch.int64, device=dev)
        if kind == "address":
            return ~idx if spec[1] else idx
        x = idx * _GOLDEN + spec[1]  # splitmix64 finaliser: int64 arithmetic wraps
        x = (x ^ (x >> 31)) * _MIX
        return (x ^ (x >> 29)).to(torch.int32)

    def write_verify(self, name: str, spec: tuple[Any, ...], pass_id: int) -> int:
        """Write pattern ``spec`` over the region, read it back; returns the bad word count."""
        torch = self.torch
        view = self._view(spec)
        if spec[0] == "const":
            view.fill_(_signed(spec[1], 32))
        else:
            for start, end in self._chunks(view):
                view[start:end] = self._expected(spec, start, end)
        size = view.element_size()
        bad = torch.zeros((), dtype=torch.int64, device=self.ctx.device)
        for start, end in self._chunks(view):
            got = self.ctx.seam.read_back(view[start:end], start * size, self.region_b, pass_id)
            if spec[0] == "const":
                bad += (got != _signed(spec[1], 32)).sum()
            else:
                bad += (got != self._expected(spec, start, end)).sum()
        count = int(bad.item())  # the pass's one synchronisation
        if count:
            self._report(name, spec, pass_id, count)
        return count

    def _report(self, name: str, spec: tuple[Any, ...], pass_id: int, count: int) -> None:
        """Scan a failing pass again to name the bad words (failure path only)."""
        torch, view = self.torch, self._view(spec)
        size = view.element_size()
        base = view.data_ptr()
        locations: list[dict[str, Any]] = []
        histogram: dict[str, int] = {}
        for start, end in self._chunks(view):
            got = self.ctx.seam.read_back(view[start:end], start * size, self.region_b, pass_id)
            found = bitcheck.diff(torch, got, self._expected(spec, start, end))
            for bit, flips in found.get("bit_histogram", {}).items():
                histogram[bit] = histogram.get(bit, 0) + flips
            for loc in found.get("locations", []):
                if len(locations) < bitcheck.MAX_LOCATIONS:
                    offset = (start + loc["index"]) * size
                    locations.append(
                        {
                            "offset_bytes": offset,
                            "address": f"0x{base + offset:x}",
                            "got": f"0x{loc['got'] & ((1 << size * 8) - 1):0{size * 2}x}",
                            "expected": f"0x{loc['expected'] & ((1 << size * 8) - 1):0{size * 2}x}",
                            "bits": loc["bits"],
                        }
                    )
        self.ctx.emit(
            {
                "type": "verify",
                "kernel": "memtest",
                "check": "pattern",
                "pattern": name,
                "step": pass_id,
                "word_bytes": size,
                "wrong_elements": count,
                "bit_histogram": histogram,
                "locations": locations,
            }
        )

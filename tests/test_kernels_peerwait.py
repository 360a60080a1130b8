"""Waiting on a collective by polling: heartbeats while waiting, a deadline on the injected clock,
the stalled peer named from the node's heartbeats, and polling that never blocks on a GPU."""

from __future__ import annotations

import time

import pytest

from burnin.kernels.peerwait import POLL_S, PeerStalled, Waiter, stalled_peers


class Script:
    """An injected world: a clock that only moves when the waiter sleeps, a collective that
    completes after ``done_after`` polls (None = never), and peers that beat or not."""

    def __init__(self, done_after: int | None, beating: set[int], clock_per_poll_s: float) -> None:
        self.now = 0.0
        self.polls = 0
        self.done_after = done_after
        self.beating = beating
        self.step = clock_per_poll_s
        self.heartbeats = 0
        self.beat_values = {0: 0.0, 1: 0.0, 2: 0.0, 3: 0.0}

    def sleep(self, seconds: float) -> None:
        self.polls += 1
        self.now += self.step
        for dev in self.beating:
            self.beat_values[dev] += 1.0

    def done(self) -> bool:
        return self.done_after is not None and self.polls >= self.done_after

    def waiter(self, timeout_s: float, min_polls: int = 3) -> Waiter:
        def heartbeat() -> None:
            self.heartbeats += 1

        return Waiter(
            members=[0, 1, 2, 3],
            me=0,
            clock=lambda: self.now,
            heartbeat=heartbeat,
            timeout_s=timeout_s,
            beats=lambda: dict(self.beat_values),
            sleep=self.sleep,
            min_polls=min_polls,
        )


@pytest.mark.parametrize(
    ("done_after", "beating", "clock_per_poll_s", "stalled", "min_clock_s"),
    [
        (40, {1, 2, 3}, 0.1, None, None),  # completes before the 10 s deadline
        (None, {1, 3}, 0.1, [2], 10.0),  # gpu2 stopped: named once 10 s passed on the clock
        (None, {3}, 0.1, [1, 2], 10.0),  # two stopped: both named
        (None, {1, 2, 3}, 0.1, [], 20.0),  # everyone beats: only the hard limit (2x) ends it
        # The clock races ahead (a simulated fleet): the deadline passes on the first poll, but
        # a peer is named only after min_polls full polls, so a starved peer is not blamed.
        (None, {1, 3}, 100.0, [2], 100.0),
    ],
)
def test_waiter(
    done_after: int | None,
    beating: set[int],
    clock_per_poll_s: float,
    stalled: list[int] | None,
    min_clock_s: float | None,
) -> None:
    script = Script(done_after, beating, clock_per_poll_s)
    waiter = script.waiter(timeout_s=10.0)
    if stalled is None:
        waiter.wait(script.done, "all-reduce")
        assert script.polls == done_after
    else:
        with pytest.raises(PeerStalled) as exc:
            waiter.wait(script.done, "all-reduce")
        assert exc.value.stalled == stalled
        assert script.now >= min_clock_s
        assert script.polls >= waiter.min_polls
        if stalled:
            names = ", ".join(f"gpu{d}" for d in stalled)
            assert str(exc.value).startswith(f"peer {names} stopped answering")
        else:
            assert "every peer made progress" in str(exc.value)
    # While waiting it heartbeats about once per POLL_S of sleep (the first naps are shorter).
    assert script.heartbeats >= max(script.polls - 15, 0)


def test_a_completed_collective_returns_without_sleeping() -> None:
    script = Script(0, set(), 1.0)
    script.waiter(timeout_s=1.0).wait(lambda: True, "all-reduce")
    assert script.polls == 0 and script.heartbeats == 0


@pytest.mark.parametrize("blocks_until_done", [1, 3])
def test_a_call_done_within_the_first_block_reads_no_clock(blocks_until_done: int) -> None:
    """The timed loop's common case costs the backend's wait alone; a longer wait heartbeats
    about once per POLL_S and reads the clock and the peers' beats as before."""
    script = Script(blocks_until_done, {1, 2, 3}, 0.1)
    reads: list[str] = []

    def clock() -> float:
        reads.append("clock")
        return script.now

    def beats() -> dict[int, float]:
        reads.append("beats")
        return dict(script.beat_values)

    waiter = script.waiter(timeout_s=10.0)
    waiter.clock, waiter.beats = clock, beats
    waiter.wait(script.done, "all-reduce", script.sleep)
    assert script.polls == blocks_until_done
    if blocks_until_done == 1:
        assert reads == [] and script.heartbeats == 0
    else:
        assert "clock" in reads and "beats" in reads and script.heartbeats == blocks_until_done


def test_naps_grow_from_tens_of_microseconds_to_the_poll_interval() -> None:
    naps: list[float] = []
    waiter = Waiter([0, 1], 0, lambda: 0.0, lambda: None, 1.0, sleep=naps.append)
    waiter.wait(lambda: len(naps) >= 15, "all-reduce")
    assert naps[0] < 1e-3 and naps == sorted(naps) and naps[-1] == POLL_S


def test_a_backend_block_replaces_the_sleeps_and_still_meets_the_deadline() -> None:
    script = Script(None, {1, 3}, 0.1)
    blocks: list[float] = []

    def block(seconds: float) -> None:  # a gloo Work.wait(timeout) that never completes
        blocks.append(seconds)
        script.sleep(seconds)

    with pytest.raises(PeerStalled) as exc:
        script.waiter(timeout_s=10.0).wait(script.done, "all-reduce", block)
    assert exc.value.stalled == [2]
    assert set(blocks) == {POLL_S} and len(blocks) == script.polls


@pytest.mark.parametrize(
    ("before", "after", "stalled"),
    [
        ({1: 5.0, 2: 5.0}, {1: 6.0, 2: 5.0}, [2]),
        ({1: 5.0, 2: 5.0}, {1: 6.0, 2: 6.0}, []),
        ({0: 5.0, 1: 6.0}, {0: 5.0, 1: 6.0}, [1]),  # this rank itself is never named
        ({}, {1: 5.0}, []),  # without a value before, nobody is judged
    ],
)
def test_stalled_peers_are_those_whose_heartbeat_did_not_change(
    before: dict[int, float], after: dict[int, float], stalled: list[int]
) -> None:
    assert stalled_peers([0, 1, 2], 0, before, after) == stalled


@pytest.mark.gpu
def test_polling_a_cuda_event_never_blocks_while_a_kernel_runs() -> None:
    import torch

    a = torch.randn(8192, 8192, device="cuda")
    torch.cuda.synchronize()
    done = torch.cuda.Event()
    for _ in range(20):  # ~20 × 1.1 TFLOP: long enough on any GPU to be seen running
        a = a @ a
        a /= a.norm()
    done.record()
    seen: list[bool] = []

    def query() -> bool:
        seen.append(done.query())
        return seen[-1]

    beats: list[float] = []
    started = time.monotonic()
    Waiter([0], 0, time.monotonic, lambda: beats.append(time.monotonic()), 60.0).wait(
        query, "matmul"
    )
    assert seen[0] is False and seen[-1] is True  # not complete at first, then complete
    assert time.monotonic() - started < 60.0
    if len(seen) > 30:  # waited long enough to heartbeat: it did, while the kernel ran
        assert beats

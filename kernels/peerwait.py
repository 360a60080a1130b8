"""Waiting on a collective without blocking: poll, heartbeat, give up, name the peer that hung.

A blocking wait (``Work.wait()`` on gloo, the ``cudaEventSynchronize`` behind reading an NCCL
result) stops the waiting rank's heartbeat, so a rank stuck behind a hung peer looks hung
itself, and torch's default NCCL error handling tears every rank of the group down (see
``collectives.NCCL_ERROR_HANDLING``). Here a rank polls completion instead
(``Work.is_completed()``, ``torch.cuda.Event.query()``), heartbeats while it waits, and gives up
once ``timeout_s`` has passed on the kernel's clock (the injected one: a simulated or a test
clock decides, not the host's speed). Who stopped answering comes from the node's heartbeats,
the values the supervisor's watchdog reads: a peer whose heartbeat did not change during the
whole wait is stalled; a peer that beats is alive, however slow. Imports nothing heavy.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

POLL_S = 0.05  # longest sleep between two polls, and the heartbeat interval while waiting
_FIRST_S = 5e-5  # first sleep, doubled up to POLL_S, so a fast collective is not slowed down
# Full-length polls a stalled verdict needs at least: a peer the host's scheduler starved for a
# moment (two shared cores, a simulated clock racing ahead of wall time) is not named.
MIN_POLLS = 20
# Wall seconds past the group's timeout that tearing down waits for gloo to end a stuck call.
_TEARDOWN_GRACE_S = 5.0


class PeerStalled(TimeoutError):
    """A collective did not complete in time; ``stalled`` are the peers that made no progress."""

    def __init__(self, what: str, stalled: Sequence[int], waited_s: float) -> None:
        self.stalled = sorted(stalled)
        self.waited_s = waited_s
        who = ", ".join(f"gpu{d}" for d in self.stalled)
        if self.stalled:
            text = (
                f"peer {who} stopped answering: {what} did not complete within {waited_s:g} s "
                f"and {who} made no progress meanwhile"
            )
        else:
            text = f"{what} did not complete within {waited_s:g} s while every peer made progress"
        super().__init__(text)


def stalled_peers(
    members: Sequence[int], me: int, before: Mapping[int, float], after: Mapping[int, float]
) -> list[int]:
    """Members other than ``me`` whose heartbeat value did not change from ``before`` to
    ``after`` (a change, not an age: no clock is compared). A member without a value is not
    judged."""
    return sorted(
        d for d in members if d != me and d in before and d in after and before[d] == after[d]
    )


@dataclass
class Waiter:
    """Polls one rank's collectives (see the module docstring).

    Args:
        members: the devices of the group.
        me: this rank's device.
        clock: the kernel's clock (``ctx.monotonic``): the deadline counts on it.
        heartbeat: called about every ``poll_s`` while waiting.
        timeout_s: how long a collective may take on ``clock`` before stalled peers are named;
            with no stalled peer the wait goes on to twice this, then gives up naming no one.
        beats: the node's heartbeat values by device; None = nobody can be named.
        sleep: the pause between polls (wall time).
    """

    members: Sequence[int]
    me: int
    clock: Callable[[], float]
    heartbeat: Callable[[], None]
    timeout_s: float
    beats: Callable[[], Mapping[int, float]] | None = None
    sleep: Callable[[float], None] = time.sleep
    poll_s: float = POLL_S
    min_polls: int = MIN_POLLS

    def wait(
        self, done: Callable[[], bool], what: str, block: Callable[[float], bool] | None = None
    ) -> None:
        """Return once ``done()`` is true; raise :class:`PeerStalled` past the deadline.

        ``block(seconds)``, where the backend has one, waits up to ``seconds``, returns as soon
        as the collective completes and says whether it did (see :func:`work_block`): no
        latency is added to a timed call. Without it the waiter sleeps, from tens of
        microseconds up to ``poll_s``.
        """
        nap, since_beat, polls = min(_FIRST_S, self.poll_s), 0.0, 0
        if block is not None:
            # Nearly every call completes within the first block: such a call costs the
            # backend's wait alone (no completion query, clock or heartbeat read) and, having
            # waited under one poll interval, owes no heartbeat.
            if block(self.poll_s) or done():
                return
            nap, since_beat, polls = self.poll_s, 0.0, 1
            self.heartbeat()
        elif done():
            return
        started = self.clock()
        before = self._beats()
        while not done():
            (block or self.sleep)(nap)
            since_beat += nap
            polls += nap >= self.poll_s
            nap = min(nap * 2, self.poll_s)
            if since_beat >= self.poll_s:
                since_beat = 0.0
                self.heartbeat()
            waited = self.clock() - started
            if waited < self.timeout_s or polls < self.min_polls:
                continue
            stalled = stalled_peers(self.members, self.me, before, self._beats())
            if stalled or waited >= 2 * self.timeout_s:
                raise PeerStalled(what, stalled, round(waited, 3))

    def _beats(self) -> dict[int, float]:
        return dict(self.beats()) if self.beats is not None else {}


def work_block(work: Any) -> Callable[[float], bool]:
    """A ``block`` for :meth:`Waiter.wait` on a gloo ``Work``: ``Work.wait(timeout)`` returns
    (True) as soon as the call completes; at the limit gloo raises "Operation timed out!" and
    the call goes on (c10d's ``Work::wait``), so that error is not the call's. A call that
    failed is completed, and the caller's final ``Work.wait()`` raises its real error. Not for
    NCCL, whose ``wait`` with a timeout blocks the host and treats the limit as the call's
    failure."""

    def block(seconds: float) -> bool:
        try:
            return bool(work.wait(timedelta(seconds=seconds)))
        except RuntimeError:
            return False

    return block


def leave_group(
    dist: Any, pending: Any, cuda: bool, heartbeat: Callable[[], None], timeout_s: float
) -> None:
    """Leave the process group without blocking on a collective this rank gave up on.

    NCCL: abort the communicators, so the stuck kernels end and the card is free for the next
    kernel. gloo has no abort: the stuck call ends at the group's timeout (wall time), or at
    once when the supervisor kills the peer that stopped answering; wait for that, heartbeating.
    """
    if not dist.is_initialized():
        return
    if pending is not None and not pending.is_completed():
        if cuda:
            dist.distributed_c10d._abort_process_group()
            return
        wall = Waiter([], -1, time.monotonic, heartbeat, timeout_s + _TEARDOWN_GRACE_S)
        try:
            wall.wait(pending.is_completed, "the abandoned all-reduce")
        except PeerStalled:
            return  # destroying the group now would block on that call: left to process exit
    dist.destroy_process_group()

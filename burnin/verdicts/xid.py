"""``xid``: XID events the driver reported during the run.

Each XID's status, action and meaning come from NVIDIA's XID catalog
(docs.nvidia.com/deploy/xid-errors); an XID not listed FAILs with ``retest``: during a
controlled burn-in any XID is the card's or the driver's, never a user job's.
"""

from __future__ import annotations

from collections.abc import Iterator

from burnin.verdicts.finding import Findings
from burnin.verdicts.model import CheckContext, GpuData, Status, Verdict
from burnin.verdicts.registry import check

# XID -> (status, action, meaning), from the catalog named above.
_XIDS: dict[int, tuple[Status, str, str]] = {
    13: (Status.WARN, "retest", "graphics engine exception (often software)"),
    31: (Status.WARN, "retest", "GPU memory page fault (often software)"),
    43: (Status.WARN, "retest", "GPU stopped processing (often software)"),
    45: (Status.WARN, "retest", "preemptive cleanup after an earlier error"),
    48: (Status.FAIL, "rma", "double-bit (uncorrectable) ECC error"),
    61: (Status.FAIL, "retest", "internal micro-controller breakpoint"),
    62: (Status.FAIL, "retest", "internal micro-controller halt"),
    63: (Status.WARN, "retest", "a page retirement or row remap was recorded; reset the GPU"),
    64: (Status.FAIL, "rma", "recording a page retirement or row remap failed"),
    74: (Status.FAIL, "reseat", "NVLink error"),
    79: (Status.FAIL, "reseat", "GPU has fallen off the bus"),
    92: (Status.FAIL, "rma", "high single-bit ECC error rate"),
    94: (Status.WARN, "retest", "contained ECC error; reset the GPU"),
    95: (Status.FAIL, "rma", "uncontained ECC error"),
    119: (Status.FAIL, "retest", "GSP firmware timeout"),
    120: (Status.FAIL, "retest", "GSP firmware error"),
}


@check("xid", needs=("telemetry",), cpu=False)
def xid(gpu: GpuData, ctx: CheckContext) -> Iterator[Verdict]:
    """XID events the driver reported during the run."""
    f = Findings("xid")
    for event in (e for e in gpu.events if e.get("kind") == "xid"):
        code = event.get("code")
        status, action, meaning = _XIDS.get(
            int(code) if isinstance(code, int) else -1,
            (Status.FAIL, "retest", "a driver-reported GPU error"),
        )
        f.problem(
            status,
            f"XID {code} at {event.get('elapsed_s', '?')} s: {meaning}",
            observed=code,
            action=action,
        )
    if gpu.inventory.get("xid_events_supported"):
        f.ok("no XID during the run", observed=0, unit="XIDs")
    elif not f.items:
        f.gap("XID events not available from this telemetry backend")
    yield f.verdict()

"""Verdicts: pure checks over the run store, one registry, worst-of aggregation to exit codes.

Workers never judge. After (or without) a run, :func:`evaluate` (the verdicts stage,
``stage.py``) loads each device's records into a :class:`GpuData`, calls every registered check
that applies to it and writes ``verdicts.jsonl``; reports render that file. The model (status,
verdict, device data) is in ``model.py``, the registry in ``registry.py``; each built-in check
lives in a module named after its check id and is imported here, in report order, so importing
this package registers them all.
"""

from burnin.verdicts.model import (
    CheckContext,
    GpuData,
    Status,
    Verdict,
    device_status,
    exit_code,
    nothing_judged,
    worst,
)
from burnin.verdicts.registry import Check, check, checks, registered
from burnin.verdicts.stage import evaluate, judge, read_verdicts

# Built-in checks, imported for their registration, in the order of their verdicts.
# isort: off
from burnin.verdicts import compute as compute
from burnin.verdicts import health as health
from burnin.verdicts import lifecycle as lifecycle
from burnin.verdicts import memory as memory
from burnin.verdicts import memory_health as memory_health
from burnin.verdicts import network as network
from burnin.verdicts import screening as screening
# isort: on

__all__ = [
    "Check",
    "CheckContext",
    "GpuData",
    "Status",
    "Verdict",
    "check",
    "checks",
    "device_status",
    "evaluate",
    "exit_code",
    "judge",
    "nothing_judged",
    "read_verdicts",
    "registered",
    "worst",
]

"""Verdicts: pure checks over the run store, one registry, worst-of aggregation to exit codes.

Workers never judge. After (or without) a run, :func:`evaluate` (the verdicts stage,
``stage.py``) loads each device's records into a :class:`GpuData`, calls every registered check
that applies to it and writes ``verdicts.jsonl``; reports render that file. The model (status,
verdict, device data) is in ``model.py``, the registry in ``registry.py``; each built-in check
lives in a module named after its check id (``lifecycle``, ``network`` and ``evidence`` hold
small families, one id each) and is imported here, so importing this package registers them
all. Shared parts: ``finding.py`` (one finding type, one fold), ``peers.py`` (one peer
statistic), ``limits.py`` (one way to read a threshold), ``records.py`` (questions about a
device's records).
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
from burnin.verdicts.stage import evaluate, read_verdicts, snapshot

# Built-in checks, imported for their registration, in the order of their verdicts: those
# that judge an inventory first (the order burnin inspect lists them in), then the run's.
# isort: off
from burnin.verdicts import identity as identity
from burnin.verdicts import firmware as firmware
from burnin.verdicts import wear as wear
from burnin.verdicts import ecc as ecc
from burnin.verdicts import retired_pages as retired_pages
from burnin.verdicts import row_remap as row_remap
from burnin.verdicts import pcie_link as pcie_link
from burnin.verdicts import pcie_replay as pcie_replay
from burnin.verdicts import nvlink as nvlink
from burnin.verdicts import power as power
from burnin.verdicts import fan as fan
from burnin.verdicts import xid as xid
from burnin.verdicts import throttle as throttle
from burnin.verdicts import thermal as thermal
from burnin.verdicts import sdc as sdc
from burnin.verdicts import throughput as throughput
from burnin.verdicts import stability as stability
from burnin.verdicts import membw as membw
from burnin.verdicts import pcie_bw as pcie_bw
from burnin.verdicts import network as network
from burnin.verdicts import lifecycle as lifecycle
from burnin.verdicts import evidence as evidence
from burnin.verdicts import regression as regression
from burnin.verdicts import rack as rack
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
    "nothing_judged",
    "read_verdicts",
    "registered",
    "snapshot",
    "worst",
]

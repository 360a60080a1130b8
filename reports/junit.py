"""junit.xml: one testsuite per node, one testcase per card and check, for CI systems.

Test names are ``<node>/gpu<index>/<check>``, unique in the file and the same from run to run,
so Jenkins and GitLab track each card's check over time (GitLab keeps only the first of two
cases with the same name, docs.gitlab.com/ci/testing/unit_test_reports). A check with several
verdicts on one card (``preflight``) names each by its unit, ``preflight[processes]``.

Statuses: FAIL is a ``<failure>``, ERROR an ``<error>``, SKIP a ``<skipped>`` with the reason.
JUnit has no warning state, and neither Jenkins' JUnit plugin nor GitLab has one; a WARN does not
fail the run (exit 0), so it is a passing testcase whose ``<system-out>`` starts with ``WARN:``
(Jenkins shows a passing case's output) and whose properties hold ``burnin.status = WARN`` for
tools that read them; a WARN must not read as a test not run, so it is never ``<skipped>``.
GitLab shows the output of failed cases only (gitlab.com/gitlab-org/gitlab issue 370760), so
there a WARN reads as a pass: where a WARN must stop a pipeline, run with ``--strict``, which
makes it a ``<failure type="WARN">``. Every case carries its verdict (observed, limit, unit,
action) and the card (uuid, serial, sku) as properties, as pytest's ``record_property`` does.

Times: a check judging a kernel's work takes that kernel's time on the card (from its
``kernel-start`` record to its result, reports/figures.py); a check judging telemetry or the
inventory has no time of its own (0). A suite's time is its node's longest card, the root's the
run's wall time (started_at to finished_at).
"""

from __future__ import annotations

import datetime as dt
import re
import xml.etree.ElementTree as ET
from collections import Counter
from typing import Any

# Characters XML 1.0 forbids even when escaped: one of them (a hostile serial's control byte)
# would make the whole junit.xml unreadable to the CI system. Shown as U+FFFD instead.
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
# Which kernels' work each check judges (burnin/verdicts/); sdc reads every kernel's
# verifications. Checks not listed judge telemetry or the inventory.
KERNELS_OF = {
    "sdc": ("matmul", "membw", "memtest", "pcie", "allreduce"),
    "throughput": ("matmul",),
    "stability": ("matmul",),
    "membw": ("membw",),
    "pcie-bw": ("pcie",),
    "allreduce": ("allreduce",),
    "slow-link": ("allreduce",),
}


def _clean(value: Any) -> str:
    return _XML_INVALID.sub("\ufffd", "" if value is None else str(value))


def _seconds(value: float) -> str:
    return f"{max(value, 0.0):.3f}"


def _wall_s(context: dict[str, Any]) -> float:
    try:
        start = dt.datetime.fromisoformat(str(context.get("started_at")).replace("Z", "+00:00"))
        end = dt.datetime.fromisoformat(str(context.get("finished_at")).replace("Z", "+00:00"))
    except ValueError:
        return 0.0
    return max(0.0, (end - start).total_seconds())


def case_names(gpu: dict[str, Any]) -> list[str]:
    """The testcase name of each verdict of ``gpu``, in verdict order, all distinct."""
    base = f"{gpu['node']}/gpu{gpu['index']}"
    checks = Counter(v["check"] for v in gpu["verdicts"])
    names = [
        f"{base}/{v['check']}"
        + (f"[{v.get('unit') or 'verdict'}]" if checks[v["check"]] > 1 else "")
        for v in gpu["verdicts"]
    ]
    seen: Counter[str] = Counter()
    out = []
    for name in names:
        seen[name] += 1
        out.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    return out


def _property(parent: ET.Element, name: str, value: Any) -> None:
    if value is not None:
        ET.SubElement(parent, "property", name=name, value=_clean(value))


def _case(
    suite: ET.Element, gpu: dict[str, Any], v: dict[str, Any], name: str, strict: bool
) -> str:
    kernels = KERNELS_OF.get(v["check"], ())
    seconds = sum(float(gpu.get("kernel_s", {}).get(k, 0.0)) for k in kernels)
    case = ET.SubElement(
        suite,
        "testcase",
        classname=_clean(f"{gpu['node']}.gpu{gpu['index']}"),
        name=_clean(name),
        time=_seconds(seconds),
    )
    props = ET.SubElement(case, "properties")
    _property(props, "burnin.status", v["status"])
    for key in ("observed", "limit", "unit", "action"):
        _property(props, f"burnin.{key}", v.get(key))
    for key in ("uuid", "serial", "sku"):
        _property(props, f"burnin.{key}", gpu.get(key))
    message, status = _clean(v["message"]), v["status"]
    outcome = status
    if status == "ERROR":
        ET.SubElement(case, "error", message=message, type="ERROR").text = message
    elif status == "FAIL" or (status == "WARN" and strict):
        ET.SubElement(case, "failure", message=message, type=status).text = message
        outcome = "FAIL"
    elif status == "SKIP":
        ET.SubElement(case, "skipped", message=message)
    ET.SubElement(case, "system-out").text = f"{status}: {message}"
    return outcome


def junit_xml(context: dict[str, Any]) -> str:
    """The run as JUnit XML (the schema Jenkins' JUnit plugin and GitLab read)."""
    strict = bool(context.get("strict"))
    root = ET.Element("testsuites", name=_clean(f"burnin {context.get('profile') or ''}".strip()))
    by_node: dict[str, list[dict[str, Any]]] = {}
    for gpu in context["gpus"]:
        by_node.setdefault(gpu["node"], []).append(gpu)
    totals: Counter[str] = Counter()
    for node, gpus in sorted(by_node.items()):
        suite = ET.SubElement(root, "testsuite", name=_clean(node))
        if context.get("started_at"):
            suite.set("timestamp", _clean(str(context["started_at"]).removesuffix("Z")))
        suite.set("hostname", _clean(node))
        props = ET.SubElement(suite, "properties")
        _property(props, "burnin.run_id", context.get("run_id"))
        _property(props, "burnin.profile", context.get("profile"))
        counts: Counter[str] = Counter()
        for gpu in sorted(gpus, key=lambda g: g["index"]):
            for v, name in zip(gpu["verdicts"], case_names(gpu), strict=True):
                counts[_case(suite, gpu, v, name, strict)] += 1
        suite_s = max((sum(g.get("kernel_s", {}).values()) for g in gpus), default=0.0)
        attrs = {
            "tests": sum(counts.values()),
            "failures": counts["FAIL"],
            "errors": counts["ERROR"],
            "skipped": counts["SKIP"],
        }
        for key, value in attrs.items():
            suite.set(key, str(value))
        suite.set("time", _seconds(suite_s))
        totals.update(attrs)
    for key in ("tests", "failures", "errors", "skipped"):
        root.set(key, str(totals[key]))
    root.set("time", _seconds(_wall_s(context)))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"

"""Machine-readable outputs: report.json, JUnit XML and a Prometheus textfile.

All three render the same context as the HTML report. Strings that come from hardware (names,
serials) or files are encoded for each format: JSON by the json module, XML attributes and text
through ``xml.sax.saxutils``, Prometheus label values with the exposition format's escapes
(backslash, double quote, newline).
"""

from __future__ import annotations

import json
import re
from typing import Any
from xml.sax.saxutils import escape as _escape
from xml.sax.saxutils import quoteattr as _quoteattr

from burnin.store import finite
from burnin.verdicts import Status

# Characters XML 1.0 forbids even when escaped: one of them (a hostile serial's control byte)
# would make the whole junit.xml unreadable to the CI system. Shown as U+FFFD instead.
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def quoteattr(text: str) -> str:
    return _quoteattr(_XML_INVALID.sub("\ufffd", text))


def escape(text: str) -> str:
    return _escape(_XML_INVALID.sub("\ufffd", text))


_PRESENTATION_ONLY = ("series", "strict", "telemetry")


def report_json(context: dict[str, Any]) -> str:
    data = {k: v for k, v in context.items() if k not in _PRESENTATION_ONLY}
    data["gpus"] = [
        {k: v for k, v in g.items() if k not in _PRESENTATION_ONLY} for g in context["gpus"]
    ]
    return (
        json.dumps(finite(data), indent=2, ensure_ascii=True, allow_nan=False, default=str) + "\n"
    )


def junit_xml(context: dict[str, Any]) -> str:
    """One testsuite per node, one testcase per device and check."""
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f"<testsuites name={quoteattr('burnin ' + str(context['run_id']))}>",
    ]
    by_node: dict[str, list[dict[str, Any]]] = {}
    for gpu in context["gpus"]:
        by_node.setdefault(gpu["node"], []).append(gpu)
    for node, gpus in sorted(by_node.items()):
        cases = [(g, v) for g in gpus for v in g["verdicts"]]
        count = {s: sum(1 for _, v in cases if v["status"] == s) for s in Status.__members__}
        lines.append(
            f'  <testsuite name={quoteattr(node)} tests="{len(cases)}" '
            f'failures="{count["FAIL"] + count["WARN"] * context.get("strict", 0)}" '
            f'errors="{count["ERROR"]}" skipped="{count["SKIP"]}">'
        )
        for gpu, v in cases:
            name = quoteattr(f"gpu{gpu['index']}.{v['check']}")
            classname = quoteattr(f"{node}.gpu{gpu['index']}")
            lines.append(f"    <testcase classname={classname} name={name}>")
            message = quoteattr(v["message"])
            if v["status"] == "ERROR":
                lines.append(f"      <error message={message}/>")
            elif v["status"] == "FAIL" or (v["status"] == "WARN" and context.get("strict")):
                lines.append(f"      <failure message={message}/>")
            elif v["status"] == "SKIP":
                lines.append(f"      <skipped message={message}/>")
            else:
                lines.append(
                    f"      <system-out>{escape(v['status'] + ': ' + v['message'])}</system-out>"
                )
            lines.append("    </testcase>")
        lines.append("  </testsuite>")
    lines.append("</testsuites>")
    return "\n".join(lines) + "\n"


def _label(value: Any) -> str:
    text = "" if value is None else str(value)
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def prometheus(context: dict[str, Any]) -> str:
    """Textfile-collector format; status codes: 0 SKIP, 1 PASS, 2 WARN, 3 FAIL, 4 ERROR."""
    out = [
        "# HELP burnin_run_exit_code Exit code of the last burnin run.",
        "# TYPE burnin_run_exit_code gauge",
        f'burnin_run_exit_code{{run_id="{_label(context["run_id"])}"}} {context["exit_code"]}',
        "# HELP burnin_gpu_status Worst verdict per GPU (1 PASS, 2 WARN, 3 FAIL, 4 ERROR).",
        "# TYPE burnin_gpu_status gauge",
    ]
    metric_lines: list[str] = []
    check_lines: list[str] = []
    for gpu in context["gpus"]:
        labels = (
            f'node="{_label(gpu["node"])}",gpu="{gpu["index"]}",'
            f'uuid="{_label(gpu["uuid"])}",serial="{_label(gpu["serial"])}"'
        )
        out.append(f"burnin_gpu_status{{{labels}}} {Status[gpu['status']].value}")
        for name, value in sorted(gpu["metrics"].items()):
            if isinstance(value, int | float) and not isinstance(value, bool):
                metric_lines.append(f"burnin_gpu_{name}{{{labels}}} {value}")
        for v in gpu["verdicts"]:
            check_lines.append(
                f'burnin_gpu_check_status{{{labels},check="{_label(v["check"])}"}}'
                f" {Status[v['status']].value}"
            )
    out += [
        "# HELP burnin_gpu_check_status Verdict per GPU and check.",
        "# TYPE burnin_gpu_check_status gauge",
        *check_lines,
    ]
    for name in sorted({line.split("{")[0] for line in metric_lines}):
        out += [f"# TYPE {name} gauge", *[m for m in metric_lines if m.split("{")[0] == name]]
    # History hook: series from the card's past (burnin/history/prom.py), present only when the
    # run was judged against a history database.
    from burnin.history.prom import textfile_lines

    out += textfile_lines(context, _label)
    return "\n".join(out) + "\n"

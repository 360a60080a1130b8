"""Machine-readable outputs: report.json (schema ``burnin.report/1``) and where the others live.

report.json mirrors the HTML report without its presentation fields. Its JSON Schema (draft
2020-12) ships in the package, ``reports/schema/report-1.schema.json`` (:func:`report_schema`),
so a consumer can validate what it ingests; the test suite validates real and simulated runs
against it. Within ``/1`` changes only add optional fields (a consumer ignores keys it does not
know); removing or retyping a field makes it ``/2``. The other machine outputs have a module
each: JUnit XML in ``junit.py``, the Prometheus textfile in ``prom.py``, every telemetry sample
in ``parquet.py``.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from burnin.reports.junit import junit_xml
from burnin.reports.prom import prometheus
from burnin.store import finite

__all__ = ["SCHEMA_FILE", "junit_xml", "prometheus", "report_json", "report_schema"]

SCHEMA_FILE = "schema/report-1.schema.json"
_PRESENTATION_ONLY = ("series", "strict", "telemetry")


def report_json(context: dict[str, Any]) -> str:
    data = {k: v for k, v in context.items() if k not in _PRESENTATION_ONLY}
    data["gpus"] = [
        {k: v for k, v in g.items() if k not in _PRESENTATION_ONLY} for g in context["gpus"]
    ]
    return (
        json.dumps(finite(data), indent=2, ensure_ascii=True, allow_nan=False, default=str) + "\n"
    )


def report_schema() -> dict[str, Any]:
    """The JSON Schema of report.json, as shipped in the package."""
    text = (resources.files("burnin.reports") / SCHEMA_FILE).read_text(encoding="utf-8")
    return json.loads(text)

"""Terminal text shared by every command that prints (plan, inspect, the run's summary).

Device names, serials, dump files and verdict messages come from untrusted gear: every line a
command prints goes through :func:`printable`, so a newline or an escape sequence in them can
neither forge a status line nor repaint the terminal. :func:`status_lines` is the one-line-per-
device (or per problem) verdict listing of nccl-tests' footer habit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def status_lines(gpus: list[dict[str, Any]], where: Callable[[dict[str, Any]], str]) -> list[str]:
    """One line per device (``PASS - node-03 gpu5``), or one per WARN/FAIL/ERROR verdict with
    its message and action; ``where`` names the device (node and index, or a dump file)."""
    lines = []
    for gpu in gpus:
        bad = [v for v in gpu["verdicts"] if v["status"] in ("WARN", "FAIL", "ERROR")]
        if not bad:
            lines.append(f"{gpu['status']} - {where(gpu)}")
        for v in bad:
            lines.append(
                f"{v['status']} - {where(gpu)} {v['check']}: {v['message']} (action: {v['action']})"
            )
    return lines


def printable(text: str) -> str:
    """``text`` with every non-printable character (controls, bidi overrides) escaped."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)

"""Terminal summary in the nccl-tests habit: ``#`` metadata, a table with a units row, one status
line per device, then one OK/FAILED line per check and the run's result."""

from __future__ import annotations

from typing import Any

from burnin.text import printable, status_lines


def _cell(value: Any, width: int, digits: int = 4) -> str:
    if value is None:
        return f"{'n/a':>{width}}"
    if isinstance(value, float):
        return f"{value:>{width}.{digits}g}"
    return f"{value!s:>{width}}"


def summary(context: dict[str, Any]) -> str:
    versions = context.get("versions", {})
    lines = [
        f"# burnin {versions.get('burnin', '?')}  run {context['run_id']}  "
        f"profile {context['profile']}",
        f"# {context['device_note']}",
    ]
    for gpu in sorted(context["gpus"], key=lambda g: (g["node"], g["index"])):
        lines.append(
            f"#  {gpu['node']} gpu{gpu['index']}: {gpu['name'] or '?'}  "
            f"uuid {gpu['uuid'] or 'n/a'}  serial {gpu['serial'] or 'n/a'}"
        )
    lines += [
        "#",
        f"# {'node':<16} {'gpu':>3} {'status':>6} {'matmul':>9} {'membw':>9} {'max_temp':>8} "
        f"{'energy':>9} {'#wrong':>7}",
        f"# {'':<16} {'':>3} {'':>6} {'(TFLOP/s)':>9} {'(GB/s)':>9} {'(C)':>8} {'(kWh)':>9} "
        f"{'':>7}",
    ]
    for gpu in context["gpus"]:
        m = gpu["metrics"]
        wrong = sum(w.get("wrong_elements") or 0 for w in gpu["wrong"])
        lines.append(
            f"  {gpu['node']:<16} {gpu['index']:>3} {gpu['status']:>6} "
            f"{_cell(m.get('matmul_tflops'), 9)} {_cell(m.get('membw_gbps'), 9)} "
            f"{_cell(m.get('max_temp_c'), 8)} {_cell(m.get('energy_kwh'), 9, 3)} "
            f"{wrong:>7}"
        )
    lines.append("")
    lines += status_lines(context["gpus"], lambda g: f"{g['node']} gpu{g['index']}")
    for node in context["nodes"]:
        ar = node.get("allreduce")
        if ar and ar.get("avg_busbw_gbps") is not None:
            wrong = ar.get("wrong") or 0
            lines.append(
                f"# {node['node']} all-reduce ({ar.get('world_size')} ranks, "
                f"{ar.get('backend')}): Avg bus bandwidth : {ar['avg_busbw_gbps']:.4g} GB/s, "
                f"largest size {ar.get('busbw_gbps') or 0:.4g} GB/s; "
                f"Out of bounds values : {wrong} {'OK' if not wrong else 'FAILED'}"
            )
    for warning in context["warnings"]:
        lines.append(f"# warning: {warning}")
    for check, counts in context["checks"].items():
        bad = counts.get("FAIL", 0) + counts.get("ERROR", 0)
        detail = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        lines.append(f"# {check:<14}: {detail:<40} {'FAILED' if bad else 'OK'}")
    word = "OK" if context["exit_code"] == 0 else "FAILED"
    lines.append(f"# Result: {context['status']}  {word}  (exit {context['exit_code']})")
    # Names, serials and messages come from untrusted gear: a newline or an escape sequence in
    # them must not forge a status line or repaint the terminal.
    return "\n".join(printable(line) for line in lines)

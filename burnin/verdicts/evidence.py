"""Evidence checks: a GPU node never passes without its GPUs, nor a GPU without its watchers.

``gpu-count``: before a run, :func:`burnin.runtime.discover` compares the GPUs CUDA shows with
the cards the driver (NVML) lists and with ``run.expect_gpus`` (``--expect-gpus``), and writes
one inventory record marked ``missing`` per card short, after the node's last GPU. Each such
record FAILs here, naming the card by PCI bus id and serial where NVML knows it, so the node
fails (exit 3) and the report shows which slot to look at. A GPU of a node with nothing missing
PASSes with the count, or SKIPs where neither the driver's list nor an expectation gave one.
``telemetry``: a GPU whose temperature, power, ECC and XIDs nobody read (NVML could not start,
or does not list the card) is not certified: ERROR, or WARN where ``telemetry.required = false``
says so, and the verdict records that choice. The CPU fallback gets neither check: it is not a
GPU run, and its inventory carries no such evidence.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from burnin.verdicts.model import CheckContext, GpuData, Status, Verdict
from burnin.verdicts.registry import check

# A card the driver cannot reach is first reseated: for XID 79 "GPU has fallen off the bus"
# NVIDIA lists seating, riser and power first (XID Errors, docs.nvidia.com/deploy/xid-errors).
MISSING_ACTION = "reseat"
# Unwatched telemetry is an environment problem (driver, NVML library), not the card's: retest.
UNWATCHED_ACTION = "retest"
_UNIT = "GPUs"


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _text(value: Any) -> str | None:
    return " ".join(str(value).split()) or None if value is not None else None


def _shown(count: Mapping[str, Any]) -> str:
    """How many GPUs the node shows against what it should, and who says so."""
    visible, listed = _count(count.get("visible")), _count(count.get("listed"))
    expected = _count(count.get("expected"))
    parts = [f"CUDA shows {visible if visible is not None else '?'}"]
    if listed is not None:
        parts.append(f"{_text(count.get('source')) or 'the driver'} lists {listed}")
    if expected:
        parts.append(f"{expected} expected (--expect-gpus)")
    if _text(count.get("cuda_visible_devices")) is not None:
        parts.append(f"CUDA_VISIBLE_DEVICES={_text(count.get('cuda_visible_devices'))!r}")
    return ", ".join(parts)


@check("gpu-count", needs=("inventory",), cpu=False)
def gpu_count(gpu: GpuData, ctx: CheckContext) -> Iterator[Verdict]:
    """FAIL per missing card; PASS on each GPU of a node that shows every card it should."""
    inv = gpu.inventory
    count = inv.get("gpu_count")
    if not isinstance(count, Mapping):
        return
    visible, wanted = _count(count.get("visible")), _count(count.get("wanted")) or 0
    if inv.get("missing") is True:
        bus, serial = _text(inv.get("pci_bus_id")), _text(inv.get("serial"))
        if _count(inv.get("nvml_index")) is not None:
            name = _text(inv.get("nvml_name"))
            named = (("at PCI", bus), ("serial", serial))
            where = f"the driver lists this card ({name or 'name unknown'})" + "".join(
                f" {label} {value}" for label, value in named if value
            )
            what = f"{where}, but CUDA does not show it"
        elif visible == 0 and not wanted:
            what = "the NVIDIA driver is present, but no GPU is usable by CUDA"
        else:
            what = "a card this node should have is not visible (the driver does not list it)"
        yield Verdict(
            check="gpu-count",
            status=Status.FAIL,
            observed=visible,
            limit=wanted or None,
            unit=_UNIT,
            action=MISSING_ACTION,
            message=f"GPU missing: {what} ({_shown(count)}); it was not stressed or judged. "
            "Check the driver log for XID 79 (fallen off the bus), reseat the card, retest",
        )
        return
    if _count(count.get("listed")) is None and not _count(count.get("expected")):
        yield Verdict(
            check="gpu-count",
            status=Status.SKIP,
            observed=visible,
            unit=_UNIT,
            message=f"not checked: the driver could not list its GPUs ({_shown(count)}); "
            "--expect-gpus N checks the count without it",
        )
        return
    if visible is not None and visible >= wanted:
        yield Verdict(
            check="gpu-count",
            status=Status.PASS,
            observed=visible,
            limit=wanted or None,
            unit=_UNIT,
            message=f"every GPU this node should show is visible ({_shown(count)})",
        )


def _required(manifest: Mapping[str, Any]) -> bool:
    config = manifest.get("config")
    telemetry = config.get("telemetry") if isinstance(config, Mapping) else None
    value = telemetry.get("required") if isinstance(telemetry, Mapping) else None
    return value is not False  # absent or malformed: required, the safe side


@check("telemetry", needs=("telemetry",), cpu=False)
def telemetry(gpu: GpuData, ctx: CheckContext) -> Iterator[Verdict]:
    """PASS when the GPU was watched; ERROR (WARN if not required) when nobody read it."""
    inv = gpu.inventory
    watched = inv.get("telemetry_watched")
    if inv.get("missing") is True or not isinstance(watched, bool):
        return
    if watched:
        yield Verdict(
            check="telemetry",
            status=Status.PASS,
            message="temperature, power, ECC and XIDs were watched during the run",
        )
        return
    reason = _text(inv.get("telemetry_unwatched")) or "no telemetry backend"
    required = _required(ctx.manifest)
    yield Verdict(
        check="telemetry",
        status=Status.ERROR if required else Status.WARN,
        observed="not watched",
        limit="watched" if required else None,
        action=UNWATCHED_ACTION if required else "none",
        message=f"telemetry not watched ({reason}): this GPU's temperature, power, ECC and "
        "XIDs were not read during the run, "
        + (
            "so it is not certified; fix NVML (driver, nvidia-ml-py) and retest"
            if required
            else "accepted because telemetry.required = false"
        ),
    )

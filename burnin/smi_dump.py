"""Parse saved ``nvidia-smi -q`` (text) and ``-q -x`` (XML) dumps into ``Inventory`` records.
Procurement screening (``burnin inspect --from FILE``) starts from a dump a seller sent, not from
hardware: this module turns such a file into one :class:`~burnin.telemetry.base.Inventory` per
GPU (``index`` = position in the file) with identity, firmware, limits, lifetime-wear and
since-driver-load counters, the PCIe link (card, slot and current) and the processes running at
dump time; which key feeds which field is in :mod:`burnin.smi_fields`.
Both layouts are handled across driver generations (R3xx to R590): XML DTD v9 to v13 element names
and the text keys that were renamed over time ("Power Limit"/"Enforced Power Limit" versus "Current
Power Limit", "Single Bit"/"Double Bit" versus "SRAM/DRAM Correctable", "Pending" versus "Pending
Page Blacklist"). A value the dump marks as unavailable ("N/A", "[Not Supported]", "ERR!", ...)
becomes ``None`` and its field name is listed in ``unsupported``; a field the dump does not contain
at all stays ``None`` and unlisted. Temperature "T.Limit" entries (Hopper and later) are margins,
not thresholds, so they never fill ``slowdown_temp_c``/``shutdown_temp_c``, and ``fan_count`` is
only ever marked unsupported (nvidia-smi prints one fan figure whatever the number of fans). The
file is untrusted: a file that is not a readable dump raises :class:`~burnin.errors.DumpError`
naming the file (and the line, for text), while one value hidden or edited into something
nvidia-smi never prints ("[REDACTED]", "lots MiB") is ``None`` and named with its line in the
card's :class:`~burnin.smi_state.DumpState`, so one field never stops a lot's screening. Strings
are kept as written minus control characters, and XML entity declarations are refused.
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from burnin import smi_fields as F
from burnin.errors import DumpError
from burnin.smi_state import DumpState, hidden_value, read_state
from burnin.telemetry.base import Inventory

MAX_DUMP_BYTES = 64 * 2**20
TEXT_HEADER = "==============NVSMI LOG=============="
_NA_WORDS = (  # values nvidia-smi prints instead of a reading, lower case without [brackets]
    "|n/a|not supported|unknown error|err!|unknown|not available|insufficient permissions|"
    "requested functionality has been deprecated|no permission|gpu is lost|gpu requires reset|"
    "not found|no data|not ready|timeout"
)
_UNAVAILABLE = frozenset(_NA_WORDS.split("|"))
_TRUE = frozenset({"yes", "enabled", "true", "active"})
_FALSE = frozenset({"no", "disabled", "false", "not active"})
_KV = re.compile(r"^(\S(?:.*?\S)?)\s+:(?:\s(.*))?$")
_GPU_HEADER = re.compile(r"^GPU\s+([0-9A-Fa-f]+:[0-9A-Fa-f]+:[0-9A-Fa-f]+(?:\.[0-9A-Fa-f]+)?)$")
_CORRUPT_INFOROM = re.compile(r"infoROM is corrupted at gpu\s+([0-9A-Fa-f:.]+)", re.IGNORECASE)
_NUMBER = re.compile(r"^([+-]?\d{1,18}(?:\.\d{1,9})?)\s*([A-Za-z%()]*)$")  # unit: "bank(s)"
_DEVICE_ID = re.compile(r"^(?:0[xX])?([0-9A-Fa-f]{4})([0-9A-Fa-f]{4})$")
_SUBSYSTEM_ID = re.compile(r"^(?:0[xX])?([0-9A-Fa-f]{8})$")
_FIRST_ELEMENT = re.compile(r"<(?![?!/])([^\s/>]{1,80})")
_MAX_XML_DEPTH = 16
_MAX_PROCESS_NAME = 256  # characters kept of a process name (a path, untrusted)

_FIELD_ORDER = [f.name for f in dataclasses.fields(Inventory)]
Key = tuple[str, ...]


@dataclass
class _Node:
    """One GPU section (or the top level) as a flat map: lower-case key path -> (value, line)."""

    label: str
    values: dict[Key, tuple[str, int | None]] = field(default_factory=dict)
    # (pid, name) per listed process: repeated keys, which the flat map would collapse to one.
    processes: list[tuple[str | None, str | None]] = field(default_factory=list)


def _key(path: str) -> Key:
    return tuple(path.split("/"))


def _norm(name: str) -> str:
    return " ".join(name.lower().split())


def _clean(value: str) -> str:
    """Drop control and format characters (incl. bidi overrides); keep everything else verbatim."""
    return "".join(ch for ch in value if unicodedata.category(ch) not in ("Cc", "Cf")).strip()


def _unavailable(value: str) -> bool:
    return _clean(value).strip("[]").strip().lower() in _UNAVAILABLE


def _bus_key(bus_id: str) -> tuple[int, ...] | None:
    parts = re.split(r"[:.]", bus_id.strip())
    try:
        return tuple(int(p, 16) for p in parts) if len(parts) in (3, 4) else None
    except ValueError:
        return None


class _Reader:
    """Field lookups on one node; records unsupported fields and raises located DumpErrors."""

    def __init__(
        self, source: str, node: _Node, unsupported: set[str], hidden: dict[str, str]
    ) -> None:
        self.source, self.node, self.unsupported, self.hidden = source, node, unsupported, hidden

    def withheld(self, name: str, line: int | None, value: str) -> None:
        """A value hidden or edited into something nvidia-smi never prints: named, not fatal."""
        where = f"line {line}: " if line is not None else ""
        self.hidden.setdefault(name, f"{where}{value[:40]}")

    def present(self, paths: str) -> bool:
        return any(_key(p) in self.node.values for p in paths.split("|"))

    def raw(self, name: str, paths: str) -> tuple[str, int | None, Key] | None:
        """First usable value among ``paths``; if there are only N/A-likes, ``name`` is marked."""
        marked = False
        for key in map(_key, paths.split("|")):
            hit = self.node.values.get(key)
            if hit is not None and hidden_value(hit[0]):
                self.withheld(name, hit[1], _clean(hit[0]))
                return None
            if hit is not None and not _unavailable(hit[0]):
                return _clean(hit[0]), hit[1], key
            # present as N/A, or a parent collapsed to one N/A leaf (<remapped_rows>N/A</...>)
            marked = marked or any(
                key[:n] in self.node.values and _unavailable(self.node.values[key[:n]][0])
                for n in range(1, len(key) + 1)
            )
        if marked:
            self.unsupported.add(name)
        return None

    def string(self, name: str, paths: str) -> str | None:
        hit = self.raw(name, paths)
        return hit[0] if hit else None

    def number(self, name: str, paths: str, unit: str, kind: type) -> Any:
        hit = self.raw(name, paths)
        if hit is None:
            return None
        value, line, _key_path = hit
        m = _NUMBER.match(value)
        bad_unit = m is not None and m.group(2) and m.group(2).lower() != unit.lower()
        if m is None or bad_unit or (kind is int and "." in m.group(1)):
            self.withheld(name, line, value)
            return None
        return kind(m.group(1))

    def flag(self, name: str, paths: str) -> bool | None:
        """True if any candidate says yes/enabled, False if all usable ones say no/disabled."""
        found: list[bool] = []
        for path in paths.split("|"):
            hit = self.raw(name, path)
            if hit is not None:
                if (word := hit[0].lower()) not in _TRUE | _FALSE:
                    self.withheld(name, hit[1], hit[0])
                    continue
                found.append(word in _TRUE)
        if found:
            self.unsupported.discard(name)
        return any(found) if found else None

    def total(self, name: str, layouts: tuple[str, ...]) -> int | None:
        """Sum of the usable counters of the first layout (old, then new) the dump uses."""
        for layout in layouts:
            keys = [_key(p) for p in layout.split("|")]
            if any(k[:n] in self.node.values for k in keys for n in range(1, len(k) + 1)):
                usable = [
                    c for p in layout.split("|") if (c := self.number(name, p, "", int)) is not None
                ]
                if usable:
                    self.unsupported.discard(name)
                return sum(usable) if usable else None
        return None


def _parse_text(text: str, source: str) -> tuple[_Node, list[_Node], set[tuple[int, ...]]]:
    lines = re.split(r"\r\n?|\n", text)  # numbered as editors and grep -n count them
    start = next((i for i, ln in enumerate(lines) if ln.strip() == TEXT_HEADER), None)
    if start is None and not any(_GPU_HEADER.match(ln.strip()) for ln in lines):
        raise DumpError(
            f"{source}: not an nvidia-smi dump (no '{TEXT_HEADER}' header and no "
            "'GPU <bus id>' section)"
        )
    head = "" if start is None else lines[start].expandtabs(4)
    base = len(head) - len(head.lstrip())
    corrupt = {k for m in _CORRUPT_INFOROM.finditer(text) if (k := _bus_key(m.group(1)))}
    top, gpus = _Node("top"), []
    node = top
    stack: list[tuple[int, str]] = []  # (indent, section name)
    for lineno, line in enumerate(lines[start or 0 :], start=(start or 0) + 1):
        line = line.expandtabs(4).rstrip()
        body = line.strip()
        if not body or body == TEXT_HEADER:
            continue
        indent = max(0, len(line) - len(line.lstrip(" ")) - base)
        kv = _KV.match(body)
        if indent == 0:
            stack = []
            header = _GPU_HEADER.match(body)
            if header:
                node = _Node(header.group(1))
                gpus.append(node)
                continue
            node = top if kv else _Node("ignored")  # prose or a closing code fence ends a GPU
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = tuple(name for _, name in stack)
        name = _norm(kv.group(1) if kv else body)
        if kv:
            node.values.setdefault((*path, name), (kv.group(2) or "", lineno))
            if path and path[0] in F.PROCESS_SECTIONS:
                _add_process(node, name, kv.group(2) or "")
        stack.append((indent, name))
    return top, gpus, corrupt


def _add_process(node: _Node, key: str, value: str) -> None:
    """Text layout: a "Process ID" line opens an entry, its "Name" line below names it."""
    if key in F.PROCESS_ID_KEYS:
        node.processes.append((value, None))
    elif key in F.PROCESS_NAME_KEYS:
        if node.processes and node.processes[-1][1] is None:
            node.processes[-1] = (node.processes[-1][0], value)
        else:
            node.processes.append((None, value))


def _flatten(elem: ET.Element, node: _Node) -> None:
    todo: list[tuple[ET.Element, Key]] = [(elem, ())]
    while todo:
        parent, prefix = todo.pop()
        for child in parent:
            if not isinstance(child.tag, str) or child.tag == "gpu" or len(prefix) > _MAX_XML_DEPTH:
                continue
            key = (*prefix, child.tag.lower())
            if len(child):
                todo.append((child, key))
            else:
                node.values.setdefault(key, ((child.text or "").strip(), None))


def _parse_xml(text: str, source: str) -> tuple[_Node, list[_Node], set[tuple[int, ...]]]:
    if re.search(r"<!ENTITY", text, re.IGNORECASE):
        raise DumpError(f"{source}: XML entity declarations are not allowed in a dump")
    first = _FIRST_ELEMENT.search(re.sub(r"<!--.*?-->", "", text, flags=re.DOTALL))
    root_name = first.group(1) if first else "?"
    if root_name != "nvidia_smi_log":
        raise DumpError(
            f"{source}: not an nvidia-smi dump (root element <{_clean(root_name)[:40]}>, "
            "expected <nvidia_smi_log>)"
        )
    begin = re.search(r"<\?xml|<!DOCTYPE|<nvidia_smi_log", text)
    offset = begin.start() if begin else 0
    end = text.rfind("</nvidia_smi_log>")  # ignore what follows, e.g. a closing code fence
    end = len(text) if end < offset else end + len("</nvidia_smi_log>")
    corrupt = {k for m in _CORRUPT_INFOROM.finditer(text[:offset]) if (k := _bus_key(m.group(1)))}
    try:
        root = ET.fromstring(text[offset:end])
    except ET.ParseError as exc:
        line = exc.position[0] + text.count("\n", 0, offset)
        reason = str(exc).split(":")[0]
        raise DumpError(f"{source} line {line}: malformed XML ({reason})") from None
    except ValueError as exc:
        raise DumpError(f"{source}: malformed XML ({exc})") from None
    if root.tag != "nvidia_smi_log":
        raise DumpError(f"{source}: not an nvidia-smi dump (root element <{root.tag[:40]}>)")
    top = _Node("top")
    _flatten(root, top)
    gpus = []
    for i, gpu in enumerate(root.findall("gpu")):
        node = _Node(_clean(gpu.get("id", "")) or f"#{i}")
        _flatten(gpu, node)
        for section in F.PROCESS_SECTIONS[:2]:
            for info in gpu.findall(f"{section}/process_info"):
                node.processes.append((info.findtext("pid"), info.findtext("process_name")))
        gpus.append(node)
    return top, gpus, corrupt


def _decode(data: bytes, source: str) -> str:
    if not data.strip():
        raise DumpError(f"{source}: empty file")
    try:
        if data.startswith((b"\xff\xfe", b"\xfe\xff")):  # Windows PowerShell redirection
            text = data.decode("utf-16")
        else:
            text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DumpError(
            f"{source}: not a text file (undecodable byte at offset {exc.start})"
        ) from None
    if "\x00" in text:
        raise DumpError(f"{source}: binary file, not an nvidia-smi dump")
    if not text.strip():
        raise DumpError(f"{source}: empty file")
    return text


def _process_names(gpu: _Node, missing: set[str]) -> tuple[str, ...] | None:
    """Names of the processes listed for ``gpu``; () for "None"/an empty list, None if absent."""
    if gpu.processes:
        names = []
        for pid, name in gpu.processes:
            label = _clean(name or "")
            if not label or _unavailable(label):  # e.g. in a container: the PID is all there is
                pid_text = _clean(pid or "")
                label = f"pid {pid_text}" if pid_text and not _unavailable(pid_text) else "?"
            names.append(label[:_MAX_PROCESS_NAME])
        return tuple(names)
    keys = [k for k in gpu.values if k[0] in F.PROCESS_SECTIONS]
    heads = [_clean(gpu.values[k][0]) for k in keys if len(k) == 1]
    if heads and all(h and _unavailable(h) for h in heads):  # "Processes : N/A"
        missing.add("processes")
        return None
    return () if keys else None


def _inventory(
    index: int, gpu: _Node, top: _Node, source: str, corrupt: set[tuple[int, ...]]
) -> tuple[Inventory, DumpState]:
    missing: set[str] = set()
    hidden: dict[str, str] = {}
    r, t = _Reader(source, gpu, missing, hidden), _Reader(source, top, missing, hidden)
    values: dict[str, Any] = {name: r.string(name, paths) for name, paths in F.STRINGS.items()}
    if values["pci_bus_id"] is None and "pci_bus_id" not in missing and _bus_key(gpu.label):
        values["pci_bus_id"] = gpu.label
    if r.present(F.BOARD_PN):
        values["board_part_number"] = r.string("board_part_number", F.BOARD_PN)
        values["gpu_part_number"] = r.string("gpu_part_number", F.GPU_PN)
    else:  # before R450 "GPU Part Number" held the board's part number
        values["board_part_number"] = r.string("board_part_number", F.GPU_PN)
    for name, (paths, unit, kind) in F.NUMBERS.items():
        values[name] = r.number(name, paths, unit, kind)
    for name, paths in F.BOOLS.items():
        values[name] = r.flag(name, paths)
    for name, groups in F.ECC_SUMS.items():
        values[name] = r.total(name, groups)
    for name, paths in F.PCI_IDS.items():
        if (hit := r.raw(name, paths)) is not None:
            pattern = _DEVICE_ID if name == "pci_device_id" else _SUBSYSTEM_ID
            m = pattern.match(hit[0])
            if m and m.group(1).strip("0"):
                values[name] = m.group(1).lower()
            else:  # "000000DE": zeroed, like a blanked serial
                r.withheld(name, hit[1], hit[0])
    values["processes"] = _process_names(gpu, missing)
    # nvidia-smi prints one fan-speed figure whatever the fan count; only N/A is conclusive.
    r.raw("fan_count", F.FAN)
    bus = _bus_key(values["pci_bus_id"] or gpu.label)
    values["inforom_valid"] = False if bus is not None and bus in corrupt else None
    values["driver_version"] = t.string("driver_version", F.DRIVER)
    values["cuda_driver_version"] = t.string("cuda_driver_version", F.CUDA)
    for name, value in values.items():  # a blanked string is a hidden one, not a value
        if name in F.STRINGS and value == "":
            values[name] = None
            hidden.setdefault(name, "(blank)")
    unsupported = tuple(name for name in _FIELD_ORDER if name in missing)
    state = read_state(gpu.values, hidden, values, missing)
    return Inventory(index=index, unsupported=unsupported, **values), state


def parse_dump(path: Path) -> list[Inventory]:
    """Parse one ``nvidia-smi -q`` or ``-q -x`` dump; one Inventory per GPU, in file order."""
    return [inv for inv, _state in parse_dump_state(path)]


def parse_dump_state(path: Path) -> list[tuple[Inventory, DumpState]]:
    """Each GPU's Inventory and its state at dump time (:mod:`burnin.smi_state`), in file order.

    Raises:
        DumpError: the file is not a readable dump (never for one hidden or odd value).
    """
    source = str(path)
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_DUMP_BYTES + 1)
    except OSError as exc:
        raise DumpError(f"{source}: cannot read ({exc.strerror or exc})") from None
    if len(data) > MAX_DUMP_BYTES:
        raise DumpError(f"{source}: larger than {MAX_DUMP_BYTES // 2**20} MiB, not a dump")
    text = _decode(data, source)
    head = text.lstrip()
    if head.startswith("<") or (
        TEXT_HEADER not in text and re.search(r"<nvidia_smi_log\b", text) is not None
    ):
        top, gpus, corrupt = _parse_xml(text, source)
    else:
        top, gpus, corrupt = _parse_text(text, source)
    if not gpus:
        raise DumpError(f"{source}: the dump lists no GPUs")
    return [_inventory(i, gpu, top, source, corrupt) for i, gpu in enumerate(gpus)]

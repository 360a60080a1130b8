"""Shape checks for what a run directory holds, so a damaged or forged store is bad input.

``burnin report`` reads directories that may come from another machine, a crashed run or a
seller. JSON that parses but has the wrong shape (a temperature that is a string, a plan entry
without a device, NaN where a number belongs) would otherwise surface as a traceback deep in
pandas or a template. These checks run when the store is loaded and raise a
:class:`~burnin.errors.StoreError` naming the file, the record and the field, which the CLI
turns into exit code 2. Telemetry records are checked against the telemetry dataclasses' own
type hints, so a field another module adds is checked without touching this file; fields this
module does not know are allowed as long as unit-suffixed names (``_c``, ``_w``, ``_s``...)
carry numbers.
"""

from __future__ import annotations

import functools
import math
import types
import typing
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from burnin.errors import StoreError

Validator = Callable[[Any], bool]
# Quantities carry their unit in the name, so these suffixes mark numeric fields.
_UNIT_SUFFIXES = (
    "_c", "_w", "_s", "_j", "_mhz", "_pct", "_mib", "_gbps", "_tflops", "_kwh", "_bytes", "_rpm"
)  # fmt: skip


def _number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        return False


@functools.cache  # one validator per check, so check_records can tell the common ones apart
def _opt(check: Validator) -> Validator:
    return lambda v: v is None or check(v)


def _str(value: Any) -> bool:
    return isinstance(value, str)


def _int(value: Any) -> bool:
    return _number(value) and float(value).is_integer()


def _bool(value: Any) -> bool:
    return isinstance(value, bool)


@functools.cache
def _list_of(check: Validator) -> Validator:
    return lambda v: isinstance(v, list) and all(check(x) for x in v)


def _dict(value: Any) -> bool:
    return isinstance(value, dict)


_DESCRIBE: dict[Validator, str] = {
    _number: "a finite number",
    _str: "a string",
    _int: "an integer",
    _bool: "true or false",
    _dict: "an object",
}


def _from_hint(hint: Any) -> tuple[Validator, str]:
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        check, what = _from_hint(args[0])
        return _opt(check), f"{what} or null"
    if origin is tuple:
        check, what = _from_hint(typing.get_args(hint)[0])
        return _list_of(check), f"a list of {what}s"
    simple: dict[type, Validator] = {
        float: _number,
        int: _number,
        str: _str,
        bool: _bool,
        dict: _dict,
    }
    found = simple.get(origin or hint)
    if found is None:
        return (lambda v: True), "anything"
    return found, _DESCRIBE[found]


@functools.cache
def _dataclass_fields(name: str) -> dict[str, tuple[Validator, str]]:
    from burnin.telemetry import base

    cls = getattr(base, name)
    hints = typing.get_type_hints(cls)
    return {key: _from_hint(hint) for key, hint in hints.items() if key != "index"}


# A wrong value's place: matmul names row/col, memtest a byte offset (and address), 1-D checks an
# index; got/expected are numbers or strings (memtest's hex words, a non-finite float's name).
_LOCATION: dict[str, Validator] = {"row": _int, "col": _int, "index": _int, "offset_bytes": _int}
_LOCATION |= {"got": lambda v: _number(v) or _str(v), "expected": lambda v: _number(v) or _str(v)}
_COMMON: dict[str, tuple[Validator, str]] = {
    "device": (_opt(_int), "an integer or null"),
    "elapsed_s": (_opt(_number), "a finite number or null"),
}
_EXTRA: dict[str, dict[str, tuple[Validator, str]]] = {
    "inventory": {
        "kind": (_opt(_str), "a string or null"),
        "sku": (_opt(_str), "a string or null"),
        "telemetry_error": (_opt(_str), "a string or null"),
    },
    "samples": {},
    "events": {
        "message": (_opt(_str), "a string or null"),
        "last_sample": (_opt(_dict), "an object or null"),
        "recent_events": (_list_of(_dict), "a list of objects"),
        "processes": (_opt(_list_of(_dict)), "a list of objects or null"),
        "missing_sensors": (_list_of(_str), "a list of strings"),
        "cannot_run": (
            lambda v: isinstance(v, dict) and all(isinstance(x, str) for x in v.values()),
            "an object of strings",
        ),
        "forced": (_bool, "true or false"),
    },
    "results": {
        "type": (_str, "a string"),
        "kernel": (_opt(_str), "a string or null"),
        "metrics": (
            lambda v: isinstance(v, dict) and all(x is None or _number(x) for x in v.values()),
            "an object of finite numbers",
        ),
        "stop_reason": (_opt(_str), "a string or null"),
        "interrupted": (_opt(_bool), "true, false or null"),
        "step": (_opt(_int), "an integer or null"),
        "steps": (_opt(_int), "an integer or null"),
        "wrong_elements": (_opt(_int), "an integer or null"),
        "verifications": (_opt(_int), "an integer or null"),
        "failed_verifications": (_opt(_int), "an integer or null"),
        "locations": (
            _list_of(
                lambda loc: (
                    isinstance(loc, dict)
                    and all(c(loc[k]) for k, c in _LOCATION.items() if k in loc)
                )
            ),
            "a list of location objects (row/col, index or offset_bytes; got, expected)",
        ),
    },
}
_REQUIRED = {"events": ("kind",), "results": ("type",)}
_TELEMETRY_CLASS = {"inventory": "Inventory", "samples": "Sample", "events": "Event"}


def _rules(stream: str) -> dict[str, tuple[Validator, str]]:
    rules = dict(_dataclass_fields(_TELEMETRY_CLASS[stream])) if stream in _TELEMETRY_CLASS else {}
    rules.update(_EXTRA.get(stream, {}))
    rules.update(_COMMON)
    return rules


def check_records(stream: str, records: Iterable[dict[str, Any]], path: Path) -> None:
    """Raise StoreError for the first record of ``stream`` with a field of the wrong shape."""
    rules = _rules(stream)
    required = _REQUIRED.get(stream, ())
    # Type tests that pass exactly the values their rule passes (finite floats, ints far from
    # overflow, lists of str), so a fleet's millions of samples are checked without a call per
    # field; anything else goes to the rule itself.
    numbers = {k for k, (c, _) in rules.items() if c in (_number, _opt(_number))}
    whole = numbers | {k for k, (c, _) in rules.items() if c in (_int, _opt(_int))}
    texts = {k for k, (c, _) in rules.items() if c is _list_of(_str)}
    for number, record in enumerate(records, start=1):
        for key in required:
            if key not in record:
                raise StoreError(f"{path} record {number}: missing field {key!r}")
        for key, value in record.items():
            kind = type(value)
            if kind is float and value - value == 0.0 and key in numbers:
                continue
            if kind is int and -_BIG < value < _BIG and key in whole:
                continue
            if kind is list and key in texts and all(type(x) is str for x in value):
                continue
            rule = rules.get(key)
            if rule is None and key.endswith(_UNIT_SUFFIXES):
                rule = (_opt(_number), "a finite number or null")
            if rule is not None and not rule[0](value):
                raise StoreError(
                    f"{path} record {number}: field {key!r} must be {rule[1]}, got {_short(value)}"
                )


_BIG = 1 << 1000  # ints below this convert to a finite float


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


_PLAN_ENTRY: dict[str, tuple[Validator, str]] = {
    "node": (_str, "a string"),
    "device": (_int, "an integer"),
    "kernels": (_list_of(_str), "a list of strings"),
    "faults": (_list_of(_str), "a list of strings"),
    "start_offset_s": (_opt(_number), "a finite number or null"),
    "name": (_opt(_str), "a string or null"),
    "kind": (_opt(_str), "a string or null"),
    "uuid": (_opt(_str), "a string or null"),
}
_MANIFEST: dict[str, tuple[Validator, str]] = {
    "run_id": (_str, "a string"),
    "profile": (_opt(_str), "a string or null"),
    "started_at": (_opt(_str), "a string or null"),
    "finished_at": (_opt(_str), "a string or null"),
    "interrupted": (_opt(_bool), "true, false or null"),
    "elapsed_s": (_opt(_number), "a finite number or null"),
    "device_note": (_opt(_str), "a string or null"),
    "argv": (_list_of(_str), "a list of strings"),
    "nodes": (_list_of(_str), "a list of strings"),
    "versions": (
        lambda v: isinstance(v, dict) and all(x is None or isinstance(x, str) for x in v.values()),
        "an object of strings",
    ),
    "config": (_dict, "an object"),
    "plan": (_list_of(_dict), "a list of objects"),
    "preflight": (_opt(_dict), "an object or null"),
}


def _threshold(value: Any) -> bool:
    return value is None or _bool(value) or _number(value) or _list_of(_number)(value)


def check_manifest(manifest: dict[str, Any], path: Path) -> None:
    """Raise StoreError when manifest.json has a field of the wrong shape."""
    for key, (check, what) in _MANIFEST.items():
        if key in manifest and not check(manifest[key]):
            raise StoreError(f"{path}: field {key!r} must be {what}, got {_short(manifest[key])}")
    for number, entry in enumerate(manifest.get("plan", []), start=1):
        for key in ("node", "device"):
            if key not in entry:
                raise StoreError(f"{path}: plan entry {number} has no {key!r}")
        for key, (check, what) in _PLAN_ENTRY.items():
            if key in entry and not check(entry[key]):
                raise StoreError(
                    f"{path}: plan entry {number} field {key!r} must be {what}, "
                    f"got {_short(entry[key])}"
                )
    thresholds = manifest.get("config", {}).get("thresholds", {})
    if not isinstance(thresholds, dict):
        raise StoreError(f"{path}: config.thresholds must be an object")
    for key, value in thresholds.items():
        if not _threshold(value):
            raise StoreError(
                f"{path}: config.thresholds.{key} must be a number, got {_short(value)}"
            )

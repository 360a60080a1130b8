"""Pure: how the history names a card and reads a time, shared by the ingest, the
``regression`` check and the Prometheus series (no database, no reports imported here).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def parse_time(value: Any) -> datetime | None:
    """An ISO-8601 timestamp as an aware UTC datetime (naive input is taken as UTC)."""
    if isinstance(value, datetime):
        stamp = value
    elif isinstance(value, str) and value:
        try:
            stamp = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    else:
        return None
    return stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)


def card_key(gpu: dict[str, Any]) -> str:
    """A card's identity across runs: serial and UUID (a CPU device: its node and index)."""
    serial, uuid = gpu.get("serial"), gpu.get("uuid")
    if serial or uuid:
        return f"{serial or ''}|{uuid or ''}"
    return f"{gpu.get('node')}/{gpu.get('index')}"

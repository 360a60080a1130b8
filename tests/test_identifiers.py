"""Blanked identifiers: placeholders and redactions told from real serials and UUIDs."""

from __future__ import annotations

import pytest

from burnin.identifiers import placeholder_id


@pytest.mark.parametrize(
    ("value", "blanked"),
    [
        ("0000000000000", True),  # AWS pass-through T4
        ("0123456789012", True),
        ("GPU-12345678-aaaa-bbbb-cccc-0123456789ab", True),
        ("GPU-00000000-0000-0000-0000-000000000000", True),
        ("1650724004565", False),
        ("GPU-806f8ea2-6428-1096-a076-bb687fb45fb0", False),
        ("1322221017584", False),
        (None, False),
        ("", False),
    ],
)
def test_placeholder_id(value: str | None, blanked: bool) -> None:
    assert placeholder_id(value) is blanked

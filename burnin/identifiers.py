"""Identifiers that look blanked: what people type when they hide a serial or UUID.

A seller who redacts a dump, a virtual machine that hides the physical card and a contributor's
placeholder in a public dump all leave one repeated character or a counting run where the serial
or UUID should be; random UUIDs and factory serials contain neither. The identity check and a
dump's reader ask the same question here.
"""

from __future__ import annotations

import re

# A run of one repeated character (after dropping separators) or a counting sequence is what
# people type when they blank an identifier; random UUIDs and factory serials contain neither.
_COUNTING = "0123456789abcdef"
_SEPARATORS = re.compile(r"[^0-9a-z]")


def placeholder_id(value: str | None) -> bool:
    """Whether a serial or UUID looks blanked: one repeated character or a counting run.

    ``"0000000000000"`` (a virtualized T4), ``"0123456789012"`` and
    ``"GPU-12345678-aaaa-bbbb-cccc-0123456789ab"`` (contributors' placeholders in public dumps).
    """
    if not value:
        return False
    text = _SEPARATORS.sub("", value.lower().removeprefix("gpu-"))
    if len(text) >= 4 and len(set(text)) == 1:
        return True
    # Eight counting characters occur by chance in ~1 of 10^7 random UUIDs.
    return any(_COUNTING[i : i + 8] in text for i in range(len(_COUNTING) - 7))

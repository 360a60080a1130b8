"""Bit-exact comparison of device results: how many elements differ, where, and which bits.

Every correctness check in burnin compares raw bits, never float values: as floats ``-0.0 ==
0.0`` and ``NaN != NaN``, so a float compare both misses a flipped sign bit and flags a healthy
NaN. The XOR of the raw words names the flipped bit positions, which is what tells a stuck
memory bit (always the same bit) from a datapath fault (bits spread over the mantissa). Only the
failure path allocates anything beyond one comparison; the healthy path is one ``torch.equal``.
"""

from __future__ import annotations

import math
from typing import Any

MAX_LOCATIONS = 8  # locations kept per finding: enough to see a pattern, small in the store
_RAW = {1: "uint8", 2: "int16", 4: "int32", 8: "int64"}


def raw_view(torch: Any, tensor: Any) -> Any:
    """The same memory as a signed (uint8 for 1 byte) integer tensor of the same width."""
    return tensor.view(getattr(torch, _RAW[tensor.element_size()]))


def same_bits(torch: Any, got: Any, expected: Any) -> bool:
    """True when both tensors hold identical bits (one device pass, one synchronisation)."""
    return bool(torch.equal(raw_view(torch, got), raw_view(torch, expected)))


def words(torch: Any, tensor: Any) -> Any:
    """A contiguous tensor's raw bits as one flat run of the widest integer words that tile it:
    int64 where the byte count allows (the fastest sum), else int32, else its own width."""
    flat = tensor.view(-1)
    size = flat.numel() * flat.element_size()
    for width, kind in ((8, torch.int64), (4, torch.int32)):
        if size % width == 0 and width >= flat.element_size():
            return flat.view(kind)
    return raw_view(torch, flat)


def digest(torch: Any, tensor: Any) -> int:
    """The per-product digest: the sum of :func:`words` as int64 (wrapping, so order-free).

    One flipped bit changes one word by ±2^b and so the sum, always; two errors cancel only
    when they are equal and opposite. The timed loop computes the same sum on the device with
    ``torch.sum(words, 0, dtype=torch.int64, out=slot)``; this is its host-side twin (one sync).
    """
    return int(torch.sum(words(torch, tensor), 0, dtype=torch.int64).item())


def bits_of(value: int, width: int) -> list[int]:
    """Positions of the set bits of ``value`` read as a ``width``-bit word."""
    value &= (1 << width) - 1
    return [b for b in range(width) if value >> b & 1]


def diff(torch: Any, got: Any, expected: Any, max_locations: int = MAX_LOCATIONS) -> dict[str, Any]:
    """Describe where two same-shape 1-D or 2-D tensors differ bit for bit.

    Args:
        torch: the torch module (imported lazily by the caller).
        got: what the device returned.
        expected: what it should have returned.
        max_locations: how many differing elements to describe one by one.

    Returns:
        ``{"wrong_elements": 0}`` when identical; otherwise the count, a histogram of flipped
        bit positions over every wrong element (``{"bit": count}``), the first locations
        (``row``/``col`` or ``index``, got, expected, flipped ``bits``) and, for matrices, how
        many rows and columns hold a wrong element plus the first of them.
    """
    g, e = raw_view(torch, got), raw_view(torch, expected)
    mismatch = g != e
    count = int(mismatch.sum().item())
    if not count:
        return {"wrong_elements": 0}
    width = got.element_size() * 8
    xor = (g ^ e)[mismatch]  # only the wrong elements: small unless the card is wrong everywhere
    histogram = {}
    for bit in range(width):
        flips = int(((xor >> bit) & 1).sum().item())
        if flips:
            histogram[str(bit)] = flips
    out: dict[str, Any] = {"wrong_elements": count, "bit_histogram": histogram}
    if mismatch.dim() == 2:
        bad_rows = torch.nonzero(mismatch.any(dim=1)).flatten()
        bad_cols = torch.nonzero(mismatch.any(dim=0)).flatten()
        out["wrong_rows"] = int(bad_rows.numel())
        out["wrong_cols"] = int(bad_cols.numel())
        out["rows"] = bad_rows[:16].tolist()
        out["cols"] = bad_cols[:16].tolist()
        # Locations from the first bad rows only, so a card wrong everywhere costs no more.
        head = bad_rows[:max_locations]
        cells = torch.nonzero(mismatch[head])[:max_locations].tolist()
        positions = [(int(head[r]), c) for r, c in cells]
    else:
        positions = [(i,) for i in torch.nonzero(mismatch).flatten()[:max_locations].tolist()]
    locations = []
    for pos in positions:
        loc: dict[str, Any] = {"row": pos[0], "col": pos[1]} if len(pos) == 2 else {"index": pos[0]}
        loc["got"] = _scalar(got[pos])
        loc["expected"] = _scalar(expected[pos])
        loc["bits"] = bits_of(int(g[pos].item()) ^ int(e[pos].item()), width)
        locations.append(loc)
    out["locations"] = locations
    return out


def _scalar(value: Any) -> float | int | str:
    """A JSON-safe element: the store writes no NaN or infinity, so those become their names."""
    item = value.item()
    if isinstance(item, float):
        return item if math.isfinite(item) else str(item)
    return int(item)

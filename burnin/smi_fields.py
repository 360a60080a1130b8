"""Where each :class:`~burnin.telemetry.base.Inventory` field lives in an ``nvidia-smi`` dump.
The tables map an Inventory field to its candidate key paths, "|"-separated, XML element paths
(``nvidia-smi -q -x``, DTD v9 to v13) and lower-case text key paths (``nvidia-smi -q``) mixed;
the parser in :mod:`burnin.smi_dump` takes the first candidate that holds a usable value. Kept
apart from the parser because this is the part that grows with every driver's renamed keys,
and because the renames themselves are the knowledge worth reading in one place.
"""

from __future__ import annotations

STRINGS = {
    "uuid": "uuid|gpu uuid",
    "serial": "serial|serial number",
    "name": "product_name|product name",
    "pci_bus_id": "pci/pci_bus_id|pci/bus id",
    "vbios_version": "vbios_version|vbios version",
    "inforom_image_version": "inforom_version/img_version|inforom version/image version",
}
BOARD_PN = "board_part_number|board part number"
# Before R450 the board part number was printed as "GPU Part Number"; once "Board Part Number"
# exists, "GPU Part Number" is the chip's (e.g. 2321-886-A1).
GPU_PN = "gpu_part_number|gpu part number"
PCI_IDS = {  # field -> paths; the value is a hex id like 0x233010DE
    "pci_device_id": "pci/pci_device_id|pci/device id",
    "pci_subsystem_id": "pci/pci_sub_system_id|pci/sub system id",
}
FAN = "fan_speed|fan speed"
DRIVER = "driver_version|driver version"
CUDA = "cuda_version|cuda version"
# Process list sections: a "Processes : None" (or an empty element) means none ran.
PROCESS_SECTIONS = ("processes", "compute_processes", "compute processes")
PROCESS_NAME_KEYS = ("name", "process name", "process_name")
PROCESS_ID_KEYS = ("process id", "pid")
_PCIE = "pci/pci_gpu_link_info/pcie_gen/|pci/gpu link info/pcie generation/"
_WIDTH = "pci/pci_gpu_link_info/link_widths/|pci/gpu link info/link width/"


def under(prefixes: str, keys: str) -> str:
    """Every ``prefix + key`` combination, keys first, as one "|"-separated candidate list."""
    return "|".join(p + k for k in keys.split("|") for p in prefixes.split("|"))


def _power(keys: str) -> str:
    return under("power_readings/|gpu_power_readings/|power readings/|gpu power readings/", keys)


def _histogram(bucket: str) -> tuple[str, str, type]:
    return (
        under(
            "remapped_rows/row_remapper_histogram/"
            "|remapped rows/bank remap availability histogram/",
            f"row_remapper_histogram_{bucket}|{bucket}",
        ),
        "bank(s)",
        int,
    )


# field -> (paths, unit as printed, type)
NUMBERS: dict[str, tuple[str, str, type]] = {
    "memory_total_mib": ("fb_memory_usage/total|fb memory usage/total", "MiB", int),
    "power_limit_default_w": (_power("default_power_limit|default power limit"), "W", float),
    "power_limit_enforced_w": (
        _power(
            "enforced_power_limit|enforced power limit|current_power_limit|current power limit"
            "|power_limit|power limit"
        ),
        "W",
        float,
    ),
    "power_limit_min_w": (_power("min_power_limit|min power limit"), "W", float),
    "power_limit_max_w": (_power("max_power_limit|max power limit"), "W", float),
    "max_sm_clock_mhz": ("max_clocks/sm_clock|max clocks/sm", "MHz", int),
    "max_mem_clock_mhz": ("max_clocks/mem_clock|max clocks/memory", "MHz", int),
    # "Device Max" (R5xx+) is the card alone; older dumps only have "Max", card and slot together.
    "pcie_max_gen": (
        under(_PCIE, "max_device_link_gen|device max|gpu max|max_link_gen|max"),
        "",
        int,
    ),
    "pcie_max_width": (under(_WIDTH, "max_link_width|max"), "x", int),
    # "Max" is NVML's nvmlDeviceGetMaxPcieLink*: the best the card and this slot can do together.
    "pcie_system_max_gen": (under(_PCIE, "max_link_gen|max"), "", int),
    "pcie_system_max_width": (under(_WIDTH, "max_link_width|max"), "x", int),
    "pcie_current_gen": (
        under(_PCIE, "current_link_gen|current|device_current_link_gen|device current"),
        "",
        int,
    ),
    "pcie_current_width": (under(_WIDTH, "current_link_width|current"), "x", int),
    "pcie_replay_count": ("pci/replay_counter|pci/replays since reset", "", int),
    "slowdown_temp_c": (
        under("temperature/", "gpu_temp_slow_threshold|gpu slowdown temp"),
        "C",
        float,
    ),
    "shutdown_temp_c": (
        under("temperature/", "gpu_temp_max_threshold|gpu shutdown temp"),
        "C",
        float,
    ),
    "retired_pages_sbe": (
        "retired_pages/multiple_single_bit_retirement/retired_count|retired pages/single bit ecc",
        "",
        int,
    ),
    "retired_pages_dbe": (
        "retired_pages/double_bit_retirement/retired_count|retired pages/double bit ecc",
        "",
        int,
    ),
    "remapped_rows_correctable": (
        "remapped_rows/remapped_row_corr|remapped rows/correctable error",
        "",
        int,
    ),
    "remapped_rows_uncorrectable": (
        "remapped_rows/remapped_row_unc|remapped rows/uncorrectable error",
        "",
        int,
    ),
    # Banks by spare rows left ("Bank Remap Availability Histogram", R470+ on HBM/GDDR6 cards).
    **{f"remap_banks_{b}": _histogram(b) for b in ("max", "high", "partial", "low", "none")},
}
BOOLS = {
    "ecc_enabled": "ecc_mode/current_ecc|ecc mode/current",
    "retired_pages_pending": under(
        "retired_pages/|retired pages/",
        "pending_blacklist|pending_retirement|pending page blacklist|pending",
    ),
    "remapped_rows_pending": "remapped_rows/remapped_row_pending|remapped rows/pending",
    "remapped_rows_failure": (
        "remapped_rows/remapped_row_failure|remapped rows/remapping failure occurred"
    ),
}


def _ecc(scope: str) -> dict[str, tuple[str, str]]:
    """ECC totals of one scope (volatile: since the driver loaded; aggregate: lifetime).

    Two layouts, tried in this order: the pre-Ampere one ("Single Bit"/"Double Bit" totals) and
    the per-memory one of newer drivers (SRAM + DRAM, SRAM uncorrectable split into parity and
    SEC-DED on R550+), whose counters are summed.
    """
    prefix = f"ecc_errors/{scope}/|ecc errors/{scope}/"
    return {
        f"ecc_{scope}_sbe": (
            under(prefix, "single_bit/total|single bit/total"),
            under(prefix, "sram_correctable|dram_correctable|sram correctable|dram correctable"),
        ),
        f"ecc_{scope}_dbe": (
            under(prefix, "double_bit/total|double bit/total"),
            under(
                prefix,
                "sram_uncorrectable|sram_uncorrectable_parity|sram_uncorrectable_secded"
                "|dram_uncorrectable|sram uncorrectable|sram uncorrectable parity"
                "|sram uncorrectable sec-ded|dram uncorrectable",
            ),
        ),
    }


ECC_SUMS = {**_ecc("volatile"), **_ecc("aggregate")}

# -- the card's state when the dump was taken (burnin.smi_state), for procurement screening --
# Clock-event reasons: "Clocks Throttle Reasons" (to R530) was renamed "Clocks Event Reasons"
# (R535+); XML leaves are clocks_throttle_reason_<x> or clocks_event_reason_<x>.
REASON_SECTIONS = (
    "clocks_throttle_reasons",
    "clocks_event_reasons",
    "clocks throttle reasons",
    "clocks event reasons",
)
REASON_PREFIXES = ("clocks_throttle_reason_", "clocks_event_reason_")
# reason leaf (lower case, "_" read as " ") -> how the report names it
REASONS = {
    "hw slowdown": "HW slowdown",
    "hw thermal slowdown": "HW thermal slowdown",
    "hw power brake slowdown": "HW power brake",
    "sw thermal slowdown": "SW thermal slowdown",
}
STATE_NUMBERS: dict[str, tuple[str, str]] = {  # field -> (paths, unit as printed)
    "gpu_util_pct": ("utilization/gpu_util|utilization/gpu", "%"),
    "temp_c": ("temperature/gpu_temp|temperature/gpu current temp|temperature/gpu", "C"),
    "fan_pct": (FAN, "%"),
    "power_draw_w": (_power("power_draw|power draw|instant_power_draw|instant power draw"), "W"),
    "power_limit_requested_w": (_power("requested_power_limit|requested power limit"), "W"),
}
STATE_STRINGS = {
    "virtualization_mode": (
        "gpu_virtualization_mode/virtualization_mode|gpu virtualization mode/virtualization mode"
    ),
    "performance_state": "performance_state|performance state",
}

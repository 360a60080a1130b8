"""Telemetry backends behind one protocol (see ``base``); only ``nvml`` imports pynvml."""

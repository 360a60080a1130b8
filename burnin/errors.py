"""Exception types, one per seam, each mapped to a process exit code by the CLI.

``BurninError`` subclasses carry messages written for the person at the terminal: they name the
file, key or option that is wrong. Bad input (config, scenario, dump, run directory, option) is
exit code 2; anything else the harness cannot do is exit code 1. Hardware verdicts are never
exceptions: they are data (see ``burnin.verdicts``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import Any

EXIT_PASS = 0
EXIT_HARNESS = 1
EXIT_USAGE = 2
EXIT_FAIL = 3
EXIT_INCOMPLETE = 4


class BurninError(Exception):
    """Base of every error burnin raises on purpose."""

    exit_code = EXIT_HARNESS


class InputError(BurninError):
    """Bad input from the user: a file, an option, a directory."""

    exit_code = EXIT_USAGE


class ConfigError(InputError):
    """A config value or key is wrong; the message names the key path."""

    def __init__(self, key_path: str, problem: str, source: str | None = None) -> None:
        self.key_path = key_path
        self.problem = problem
        self.source = source
        where = f" in {source}" if source else ""
        super().__init__(f"config key '{key_path}'{where}: {problem}")


class StoreError(InputError):
    """A run directory is missing, corrupt or of an unknown schema."""


class DumpError(InputError):
    """An nvidia-smi dump cannot be parsed; the message names the file and the problem."""


class TelemetryError(BurninError):
    """The telemetry backend (NVML or simulated) failed; wraps the backend's own error."""


class DeviceError(BurninError):
    """A requested device does not exist or cannot be used."""

    exit_code = EXIT_USAGE


def exit_on_error(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a click command: a :class:`BurninError` becomes one line on stderr and its exit code."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except BurninError as exc:
            import click  # only commands reach here; library users never pay for it

            click.echo(f"burnin: error: {exc}", err=True)
            sys.exit(exc.exit_code)

    return wrapper

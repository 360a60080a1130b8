"""Shared fixtures: registry snapshots, a GPU-marker skip, and quick synthetic run stores."""

from __future__ import annotations

import pytest

from burnin.kernels import registry


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``@pytest.mark.gpu`` tests where CUDA is absent (torch imported only if needed)."""
    gpu_items = [item for item in items if "gpu" in item.keywords]
    if not gpu_items:
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in gpu_items:
        item.add_marker(skip)


@pytest.fixture
def kernel_registry():
    """Let a test register kernels; the registry is restored afterwards."""
    saved = registry.snapshot()
    yield registry
    registry.restore(saved)

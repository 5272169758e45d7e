"""Fixtures shared by several test files."""

from __future__ import annotations

import pytest


@pytest.fixture()
def one_thread():
    """Tiny models on a shared 2-core machine: one thread is as fast and never waits on a busy core."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

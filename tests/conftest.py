"""Fixtures shared by several test files."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def load_script(name: str):
    """A script of scripts/ as a module (they are not part of the package)."""
    spec = importlib.util.spec_from_file_location(f"script_{name}", ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def digit_scenes():
    """scripts/digit_scenes.py: MNIST digits on photos, with exact boxes and masks."""
    return load_script("digit_scenes")


@pytest.fixture()
def one_thread():
    """Tiny models on a shared 2-core machine: one thread is as fast and never waits on a busy core."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

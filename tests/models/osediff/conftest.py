"""Tiny random SD folders, saved in diffusers layout, for the OSEDiff tests (nothing is downloaded)."""

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from models.osediff.random_sd import write_random_sd


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Tiny models run ~10x faster on one thread when other processes share the CPUs (CI, parallel jobs)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def tiny_sd_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_random_sd(tmp_path_factory.mktemp("tiny_sd"), "tiny", seed=0)

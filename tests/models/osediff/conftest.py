"""Tiny random SD folders, saved in diffusers layout, for the OSEDiff tests (nothing is downloaded)."""

from pathlib import Path

import pytest

from models.osediff.random_sd import write_random_sd


@pytest.fixture(scope="session")
def tiny_sd_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_random_sd(tmp_path_factory.mktemp("tiny_sd"), "tiny", seed=0)

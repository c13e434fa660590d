"""pipelines/launch.py::build_trainer: how the Ray Data stream reaches the Train workers (nothing is run)."""

import dataclasses

import pytest

from pipelines import tracking
from pipelines.launch import build_trainer
from pipelines.recipes import RECIPES


@pytest.mark.parametrize(("num_workers", "split"), [(1, []), (2, "all")])
def test_one_worker_reads_the_whole_stream_and_several_split_it(num_workers, split, tmp_path):
    config = RECIPES["debug"]()
    config = dataclasses.replace(config, scaling=dataclasses.replace(config.scaling, num_workers=num_workers))
    trainer = build_trainer(config, target=tracking.TrackingTarget(uri=None, run_id=None), resume=None,
                            storage_path=str(tmp_path), run=str(tmp_path / "run"))
    # Ray's streaming split starts a SplitCoordinator actor; a single worker has nothing to split with.
    assert trainer.data_config._datasets_to_split == split

import json
import logging

import pytest
import torch

from pipelines.checkpoints import (
    CheckpointError,
    checkpoint_name,
    find_latest_checkpoint,
    list_checkpoints,
    load_latest_checkpoint,
    load_state,
    persist_checkpoint,
    read_config,
    read_config_uri,
    write_checkpoint,
)


def _write(directory, step):
    return write_checkpoint(directory, state={"step": step, "net": {"w": torch.full((2,), float(step))}},
                            config={"name": "run", "step_written": step})


def test_write_checkpoint_leaves_both_files_and_no_partial_dir(tmp_path):
    directory = _write(tmp_path / checkpoint_name(5), 5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint_00000005"]
    state = load_state(directory)
    assert state["step"] == 5 and torch.equal(state["net"]["w"], torch.full((2,), 5.0))
    assert read_config(directory) == {"name": "run", "step_written": 5}
    assert json.loads((directory / "config.json").read_text())["name"] == "run"


def test_find_latest_checkpoint_picks_the_highest_complete_step(tmp_path):
    run = tmp_path / "myrun"
    for step in (10, 30, 20):
        _write(run / checkpoint_name(step), step)
    (run / checkpoint_name(40)).mkdir()  # incomplete: no files
    (run / (checkpoint_name(50) + ".partial")).mkdir()
    uri, step = find_latest_checkpoint(str(tmp_path), "myrun")
    assert step == 30 and uri == f"{tmp_path}/myrun/checkpoint_00000030"
    assert read_config_uri(uri)["step_written"] == 30
    assert find_latest_checkpoint(str(tmp_path), "other") is None


def test_persist_checkpoint_copies_and_keeps_the_last_k(tmp_path):
    run = tmp_path / "storage" / "run"
    for step in (1, 2, 3):
        source = _write(tmp_path / "local" / checkpoint_name(step), step)
        persist_checkpoint(source, str(run), keep_last=2)
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint_00000002", "checkpoint_00000003"]
    assert load_state(run / "checkpoint_00000003")["step"] == 3


def test_load_latest_checkpoint_skips_a_truncated_newest_one_with_a_warning(tmp_path, caplog):
    run = tmp_path / "myrun"
    older, newest = _write(run / checkpoint_name(10), 10), _write(run / checkpoint_name(20), 20)
    state_file = newest / "state.pt"
    state_file.write_bytes(state_file.read_bytes()[: state_file.stat().st_size // 2])  # a cut-short copy
    candidates = list_checkpoints(str(tmp_path), "myrun")
    assert [step for _, step in candidates] == [20, 10]
    with caplog.at_level(logging.WARNING, logger="pipelines.checkpoints"):
        uri, step, state, config = load_latest_checkpoint(candidates)
    assert step == 10 and uri == f"{tmp_path}/myrun/{older.name}"
    assert state["step"] == 10 and torch.equal(state["net"]["w"], torch.full((2,), 10.0))
    assert config["step_written"] == 10
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and newest.name in warnings[0].getMessage()


def test_load_latest_checkpoint_skips_invalid_json_and_raises_when_none_loads(tmp_path, caplog):
    run = tmp_path / "myrun"
    for step in (10, 20):
        _write(run / checkpoint_name(step), step)
    (run / checkpoint_name(20) / "config.json").write_text("{not json")
    (run / checkpoint_name(10) / "state.pt").write_bytes(b"garbage")
    with (caplog.at_level(logging.WARNING, logger="pipelines.checkpoints"),
          pytest.raises(CheckpointError, match="no loadable checkpoint among 2")):
        load_latest_checkpoint(list_checkpoints(str(tmp_path), "myrun"))
    skipped = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(skipped) == 2 and checkpoint_name(20) in skipped[0] and checkpoint_name(10) in skipped[1]
    with pytest.raises(CheckpointError, match="there are none"):
        load_latest_checkpoint([])

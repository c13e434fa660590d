"""pipelines/cli.py through the real CLIs: a user error is one stderr line and exit status 2, --debug raises it,
--resume refuses flags that contradict the stored run, and a data problem leaves no MLflow run behind."""

import dataclasses
from pathlib import Path

import pytest

from pipelines import cli, evaluate, launch, restore
from pipelines.recipes import debug, refusion_tiny
from tests.pipelines.test_restore import make_checkpoint
from tuning import report, sweep_refusion, ui


@pytest.fixture
def files(tmp_path) -> Path:
    (tmp_path / "bad.yaml").write_text("optim:\n  lr: [1,\n")
    (tmp_path / "typo.yaml").write_text("train:\n  num_stpes: 3\n")
    (tmp_path / "list.yaml").write_text("- 1\n")
    (tmp_path / "bad.json").write_text('{"optim": {"lr": 1e-4,}}')
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "empty").mkdir()
    make_checkpoint(tmp_path / "ckpt", dataclasses.replace(refusion_tiny(), T=4))
    return tmp_path


CASES = [
    (launch.main, ["--set", "train.num_stpes=10"], "unknown config key 'train.num_stpes'"),
    (launch.main, ["--set", "optim.lr=nan"], "optim.lr: must be a finite number, got nan"),
    (launch.main, ["--set", "optim.lr=-1"], "optim.lr must be > 0, got -1.0"),
    (launch.main, ["--set", "train.batch_size=four"], "train.batch_size: expected int, got 'four'"),
    (launch.main, ["--set", "noequals"], "--set expects key=value, got 'noequals'"),
    (launch.main, ["--config", "{tmp}/bad.yaml"], "--config {tmp}/bad.yaml: line 3, column 1: expected the node"),
    (launch.main, ["--config", "{tmp}/bad.json"], "--config {tmp}/bad.json: line 1, column 23: Expecting property"),
    (launch.main, ["--config", "{tmp}/typo.yaml"], "--config {tmp}/typo.yaml: unknown config key 'train.num_stpes'"),
    (launch.main, ["--config", "{tmp}/list.yaml"], "expected a mapping of config keys at the top level, got list"),
    (launch.main, ["--config", "{tmp}/missing.yaml"], "--config {tmp}/missing.yaml: no such file or folder"),
    (launch.main, ["--recipe", "nope"], "unknown recipe 'nope'"),
    (launch.main, ["--name", "../escape"], "argument --name: '../escape' is not a valid name"),
    (launch.main, ["--num-workers", "-1"], "argument --num-workers: -1 must be >= 0"),
    (launch.main, ["--resume", "never-ran", "--storage-path", "{tmp}"], "--resume: no checkpoint under"),
    (launch.main, ["--data", "{tmp}/nowhere", "--storage-path", "{tmp}/runs"], "data: '{tmp}/nowhere' is neither"),
    (launch.main, ["--data", "{tmp}/empty", "--storage-path", "{tmp}/runs"], "data: no images"),
    (restore.main, ["--checkpoint", "{tmp}/nockpt", "--input", "{tmp}", "--output", "{tmp}/o"],
     "--checkpoint {tmp}/nockpt: {tmp}/nockpt does not exist"),
    (restore.main, ["--checkpoint", "{tmp}/empty", "--input", "{tmp}", "--output", "{tmp}/o"],
     "is neither a checkpoint (state.pt + config.json) nor a run folder"),
    (restore.main, ["--checkpoint", "{tmp}/ckpt", "--input", "{tmp}/empty", "--output", "{tmp}/o"],
     "--input {tmp}/empty: no images"),
    (restore.main, ["--checkpoint", "{tmp}/ckpt", "--input", "{tmp}/none.png", "--output", "{tmp}/o"],
     "--input {tmp}/none.png: {tmp}/none.png does not exist"),
    (restore.main, ["--checkpoint", "{tmp}/ckpt", "--input", "{tmp}", "--output", "{tmp}/o", "--T", "100"],
     "--T 100 but the checkpoint has 4"),
    (restore.main, ["--checkpoint", "{tmp}/ckpt", "--input", "{tmp}", "--output", "{tmp}/o", "--tile", "0"],
     "argument --tile: 0 must be >= 1"),
    (restore.main, ["--checkpoint", "{tmp}/ckpt", "--input", "{tmp}", "--output", "{tmp}/o", "--max-memory-gb", "inf"],
     "argument --max-memory-gb: inf must be > 0 and finite"),
    (evaluate.main, ["--gt", "{tmp}/nowhere", "--restored", "{tmp}"], "{tmp}/nowhere is not a folder"),
    (evaluate.main, ["--gt", "{tmp}", "--restored", "{tmp}", "--metrics", "psnr,psnx"], "--metrics: unknown psnx"),
    (sweep_refusion.main, ["--study", "noise", "--set", "optim.lr=abc"], "optim.lr: expected float, got 'abc'"),
    (sweep_refusion.main, ["--study", "noise", "--metric", "val/psnx"], "argument --metric: invalid choice"),
    (sweep_refusion.main, ["--study", "noise", "--resume", "--storage-path", "{tmp}"],
     "--resume noise: no such file or folder: {tmp}/sweeps/noise/sweep.json"),
    (report.main, ["nostudy", "--storage-path", "{tmp}"], "no study at {tmp}/sweeps/nostudy"),
    (ui.main, ["--storage-path", "{tmp}/empty"], "--storage-path {tmp}/empty: no mlflow.db in"),
    (ui.main, ["--port", "70000"], "argument --port: 70000 is not a TCP port"),
]


@pytest.mark.parametrize("main,argv,expected", CASES, ids=[f"{m.__module__}:{' '.join(a)}" for m, a, _ in CASES])
def test_a_user_error_is_one_line_naming_the_culprit_with_exit_status_2(files, capsys, main, argv, expected):
    argv = [a.format(tmp=files) for a in argv]
    with pytest.raises(SystemExit) as exit_info:
        cli.run(main, prog="prog", argv=argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2
    assert len(err) == 1 and ": error: " in err[0] and "Traceback" not in err[0], err
    assert expected.format(tmp=files) in err[0]


def test_debug_raises_the_error_with_its_traceback(files):
    with pytest.raises(cli.UserError, match="unknown config key") as info:
        cli.run(launch.main, prog="prog", argv=["--set", "train.num_stpes=10", "--debug"])
    assert isinstance(info.value.__cause__, ValueError)  # the original error is chained


def test_a_bug_is_not_turned_into_a_user_error():
    def main(argv):
        with cli.user_input("--flag"):
            raise ZeroDivisionError("a bug")

    with pytest.raises(ZeroDivisionError):
        cli.run(main, prog="prog", argv=[])


def _stored_run(storage: Path, name: str) -> None:
    """A checkpoint of the debug recipe (make_checkpoint stores debug() with the given method)."""
    make_checkpoint(storage / name / "checkpoint_00000007", debug().method)


def test_a_command_freezes_what_is_alive_out_of_the_exit_collection_and_a_call_does_not(monkeypatch):
    import gc
    import sys

    monkeypatch.setattr(sys, "argv", ["prog", "--set", "x=1"])
    try:
        assert cli.run(lambda argv: argv, prog="prog") == ["--set", "x=1"]  # as `python pipelines/train.py ...`
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
    assert cli.run(lambda argv: argv, prog="prog", argv=["y"]) == ["y"] and gc.get_freeze_count() == 0


@pytest.mark.parametrize("flags,expected", [
    (["--method", "diffir"], "--method diffir but the run trains refusion"),
    (["--recipe", "demo"], r"--recipe demo gives another config than the run's \(method.net.width, .*method.T, .* differ"),
    (["--recipe", "debug", "--smoke-test"], r"--recipe debug --smoke-test gives another config .*train.num_steps"),
    (["--name", "other"], "--name other but --resume names the run stored"),
    (["--data", "/somewhere/else"], "--data /somewhere/else but the run trains on"),
])
def test_resume_refuses_flags_that_contradict_the_stored_run(tmp_path, flags, expected):
    _stored_run(tmp_path, "stored")
    args = launch.parse_args(["--resume", "stored", "--storage-path", str(tmp_path), *flags])
    with pytest.raises(cli.UserError, match=expected):
        launch.resolve_config(args)


def test_resume_accepts_flags_that_agree_with_the_stored_run(tmp_path):
    _stored_run(tmp_path, "stored")
    args = launch.parse_args(["--resume", "stored", "--storage-path", str(tmp_path), "--method", "refusion",
                              "--recipe", "debug", "--name", "stored", "--set", "train.num_steps=60"])
    config, (uri, step) = launch.resolve_config(args)
    assert step == 7 and config.train.num_steps == 60 and uri.endswith("checkpoint_00000007")


def test_a_folder_of_broken_files_is_refused_before_ray_or_mlflow_start(tmp_path):
    (tmp_path / "photos").mkdir()
    for i in range(4):
        (tmp_path / "photos" / f"b{i}.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"broken" * 10)
    config = dataclasses.replace(debug(), storage_path=str(tmp_path / "runs"))
    config = launch.apply_overrides(config, sets=[f'data.source={{"kind": "FolderSource", "paths": ["{tmp_path}/photos"]}}'])
    with pytest.raises(cli.UserError, match=r"none of the 2 training images .*photos.* \(skipped: DecodeError 2"):
        launch.run_training(config)
    assert not (tmp_path / "runs").exists()  # no MLflow store, no FAILED run, no Ray session


def test_default_storage_is_the_env_var_then_a_persistent_folder_for_jobs_then_runs(monkeypatch, tmp_path):
    monkeypatch.delenv(cli.STORAGE_ENV, raising=False)
    monkeypatch.delenv("RAY_JOB_CONFIG_JSON_ENV_VAR", raising=False)
    assert cli.default_storage_path() == "runs"
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", "{}")  # what Ray's job supervisor sets for the entrypoint
    assert cli.default_storage_path() == str(Path.home() / "restoration" / "runs")
    monkeypatch.setenv(cli.STORAGE_ENV, str(tmp_path))
    assert cli.default_storage_path() == str(tmp_path)
    config, _ = launch.resolve_config(launch.parse_args(["--recipe", "debug"]))
    assert config.storage_path == str(tmp_path)
    config, _ = launch.resolve_config(launch.parse_args(["--recipe", "debug", "--storage-path", "elsewhere"]))
    assert config.storage_path == "elsewhere"

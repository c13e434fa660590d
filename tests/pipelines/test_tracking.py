import logging

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from pipelines import tracking


def _start(tmp_path, **kwargs):
    uri, artifact_root = tracking.embedded_store(tmp_path / "runs")
    return tracking.start_run(uri=uri, experiment="exp", artifact_root=artifact_root, run_name="r1",
                              config={"optim": {"lr": 1e-4}, "name": "r1"}, tags={"method": "refusion"}, **kwargs)


def test_embedded_store_is_inside_the_run_root_and_logs_flattened_params(tmp_path):
    target = _start(tmp_path)
    assert target.uri == f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}"
    client = MlflowClient(target.uri)
    run = client.get_run(target.run_id)
    assert run.data.params == {"optim.lr": "0.0001", "name": "r1"}
    assert run.data.tags["method"] == "refusion" and run.info.status == "RUNNING"
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.artifact_location == (tmp_path / "runs" / "mlartifacts" / "exp").as_uri()
    assert [a.path for a in client.list_artifacts(target.run_id)] == ["config.json"]


def test_experiments_open_on_the_model_training_view(tmp_path):
    uri, artifact_root = tracking.embedded_store(tmp_path / "runs")
    client = MlflowClient(uri)
    old = client.create_experiment("old", artifact_location=f"{artifact_root}/old")  # as an older version made it
    for name in ("exp", "old"):
        target = tracking.start_run(uri=uri, experiment=name, artifact_root=artifact_root, run_name="r",
                                    config={}, tags={})
        experiment = client.get_experiment(client.get_run(target.run_id).info.experiment_id)
        assert experiment.tags[tracking.EXPERIMENT_KIND_TAG] == "custom_model_development", name
    assert client.get_experiment(old).tags[tracking.EXPERIMENT_KIND_TAG] == "custom_model_development"


def test_tracker_logs_metrics_and_images_into_the_run(tmp_path):
    target = _start(tmp_path)
    tracker = tracking.Tracker(target)
    tracker.log_metrics({"train/loss": 0.5}, step=3)
    tracker.log_image(np.zeros((8, 24, 3), np.uint8), key="val/grid", step=3)
    client = MlflowClient(target.uri)
    history = client.get_metric_history(target.run_id, "train/loss")
    assert [(m.step, m.value) for m in history] == [(3, 0.5)]
    assert "images" in [a.path for a in client.list_artifacts(target.run_id)]


@pytest.mark.parametrize(("error", "status"), [(None, "FINISHED"), (RuntimeError, "FAILED"), (KeyboardInterrupt, "KILLED")])
def test_run_status_never_leaves_the_run_running(tmp_path, error, status):
    target = _start(tmp_path)
    with pytest.raises(error) if error else _nothing(), tracking.run_status(target):
        if error:
            raise error("stop")
    assert MlflowClient(target.uri).get_run(target.run_id).info.status == status


def test_resume_reopens_the_same_run(tmp_path):
    target = _start(tmp_path)
    tracking.end_run(target, "KILLED")
    again = _start(tmp_path, resume_run_id=target.run_id)
    assert again.run_id == target.run_id
    assert MlflowClient(target.uri).get_run(target.run_id).info.status == "RUNNING"


def test_unreachable_server_turns_tracking_off_with_one_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="pipelines.tracking"):
        target = tracking.start_run(uri="http://127.0.0.1:9", experiment="e", artifact_root=None, run_name="r",
                                    config={}, tags={})
        tracker = tracking.Tracker(target)
        tracker.log_metrics({"a": 1.0}, step=1)
        tracking.end_run(target, "FINISHED")
    assert target.run_id is None
    assert len([r for r in caplog.records if "unreachable" in r.message]) == 1


def test_tracker_warns_once_and_stops_after_a_failure(tmp_path, caplog):
    target = tracking.TrackingTarget(uri=tracking.embedded_store(tmp_path)[0], run_id="no-such-run")
    tracker = tracking.Tracker(target)
    with caplog.at_level(logging.WARNING, logger="pipelines.tracking"):
        tracker.log_metrics({"a": 1.0}, step=1)
        tracker.log_metrics({"a": 2.0}, step=2)
    assert len([r for r in caplog.records if "MLflow logging failed" in r.message]) == 1


def test_flatten_joins_nested_keys_with_dots():
    assert tracking.flatten({"a": {"b": 1, "c": {"d": [1, 2]}}, "e": None}) == {"a.b": "1", "a.c.d": "[1, 2]", "e": "None"}


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

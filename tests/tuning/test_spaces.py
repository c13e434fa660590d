"""Study definitions and user spaces (tuning/spaces.py) and applying swept values to the recipe."""

import pytest
from ray import tune

from pipelines.recipes import debug
from tuning.spaces import STUDIES, flat_values, is_grid_only, load_space, optimizer, setting_label
from tuning.trainable import trial_config


def test_paper_studies_sweep_the_refusion_ablation_values():
    assert STUDIES["noise"](num_steps=100).settings == (10.0, 30.0, 50.0, 70.0)
    assert STUDIES["steps"](num_steps=100).settings == (100, 1000)
    assert STUDIES["patch"](num_steps=100).settings == (128, 256)
    combos = [(s["name"], s["scheduler"]) for s in optimizer(num_steps=100).settings]
    assert combos == [("adam", "multistep"), ("adamw", "cosine"), ("lion", "cosine")]


@pytest.mark.parametrize("name", sorted(STUDIES))
def test_every_study_setting_gives_a_valid_run_config(name):
    study = STUDIES[name](num_steps=40)
    base = debug().to_dict()
    for value in study.settings:
        config = trial_config(base, {study.key: value}, name=f"{name}-x")
        node = config
        for part in study.key.split("."):
            node = getattr(node, part)
        if isinstance(value, dict):
            assert all(getattr(node, k) == (tuple(v) if isinstance(v, list) else v) for k, v in value.items())
        else:
            assert node == value
        assert config.name == f"{name}-x"
    assert base == debug().to_dict()  # the shared base is not mutated


def test_optimizer_study_milestones_scale_with_the_budget():
    adam = optimizer(num_steps=700).settings[0]
    assert adam["milestones"] == [200, 400, 600]  # ir-sde.yml's 200k/400k/600k of 700k
    assert max(optimizer(num_steps=8).settings[0]["milestones"]) < 8


def test_unknown_swept_key_is_rejected_with_its_name():
    with pytest.raises(ValueError, match="optim.learning_rate"):
        trial_config(debug().to_dict(), {"optim.learning_rate": 1e-3}, name="x")


def test_load_space_turns_yaml_into_tune_domains(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text("optim.lr: {loguniform: [1.0e-5, 1.0e-3]}\nmethod.max_sigma: {grid: [30, 50]}\n"
                    "train.batch_size: 2\noptim: {name: lion, scheduler: cosine}\n")
    space = load_space(path)
    assert isinstance(space["optim.lr"], tune.search.sample.Float)
    assert space["method.max_sigma"] == {"grid_search": [30, 50]}
    assert space["train.batch_size"] == 2 and space["optim"] == {"name": "lion", "scheduler": "cosine"}
    assert not is_grid_only(space)
    assert is_grid_only({k: v for k, v in space.items() if k != "optim.lr"})


def test_load_space_rejects_a_malformed_range(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text("optim.lr: {uniform: [1.0e-5]}\n")
    with pytest.raises(ValueError, match="optim.lr"):
        load_space(path)


def test_setting_labels_and_tags_name_the_swept_values():
    assert setting_label({"method.max_sigma": 50.0}) == "50"
    assert setting_label({"optim": {"name": "lion", "lr": 4e-5, "scheduler": "cosine"}}) == "lion+cosine"
    assert flat_values({"optim": {"name": "lion"}, "method.T": 100}) == {"optim.name": "lion", "method.T": "100"}

"""`sweep_refusion.py --scale`: what each study of a protocol runs (no Ray needed)."""

import math

import pytest

from models.nets.nafnet import REFUSION_NAFNET
from tuning.protocols import CPU, GPU
from tuning.spaces import setting_label, trial_label
from tuning.sweep_refusion import base_config, for_study, num_trials, parse_args, study_spec
from tuning.trainable import trial_config


def _study(study: str, *extra: str):
    args = for_study(parse_args(["--study", "all", "--scale", "cpu", *extra]), study)
    config = base_config(args)
    space, _ = study_spec(args, study, num_steps=config.train.num_steps)
    return args, config, space


def test_the_cpu_protocol_runs_every_setting_with_three_seeds_in_33_trials():
    total = 0
    for study, plan in CPU.plans.items():
        args, config, space = _study(study)
        assert args.recipe == "demo" and config.train.num_steps == plan.budget
        assert config.train.val_every == math.ceil(plan.budget / plan.num_reports)  # the last validation at the end
        assert space["seed"] == {"grid_search": [0, 1, 2]}
        total += num_trials(args, space)
    assert total == 4 * 3 + 2 * 3 + 2 * 3 + 3 * 3


def test_the_cpu_protocol_keeps_the_papers_learning_rate_ratios_and_its_study_overrides():
    _, _, space = _study("optimizer")
    lrs = {setting_label({"optim": s}): s["lr"] for s in space["optim"]["grid_search"]}
    assert lrs == pytest.approx({"adam+multistep": 4e-3, "adamw+cosine": 4e-3, "lion+cosine": 1.6e-3})
    _, config, _ = _study("patch")
    assert config.train.batch_size == 2  # equal steps, equal batch: 256^2 patches see 4x the pixels
    _, config, _ = _study("steps")
    assert config.data.val_patch_size == 128 and config.train.val_every == config.train.num_steps


def test_the_users_flags_override_the_protocol():
    args, config, space = _study("noise", "--budget", "50", "--seeds", "2", "--set", "train.batch_size=3")
    assert config.train.num_steps == 50 and config.train.batch_size == 3
    assert space["seed"] == {"grid_search": [0, 1]}
    args, config, _ = _study("patch", "--set", "train.batch_size=5")  # after the protocol's own --set
    assert config.train.batch_size == 5


def test_a_trials_seed_seeds_its_degradations_too_and_names_its_run():
    _, config, _ = _study("noise")
    trial = trial_config(config.to_dict(), {"method.max_sigma": 50.0, "seed": 2}, name="noise-t1")
    assert trial.seed == trial.data.seed == 2 and trial.method.max_sigma == 50.0
    assert setting_label({"method.max_sigma": 50.0, "seed": 2}) == "50"
    assert trial_label({"method.max_sigma": 50.0, "seed": 2}) == "50-seed2"


def test_the_gpu_protocol_trains_the_paper_size_net_on_one_gpu_per_trial():
    args = for_study(parse_args(["--study", "noise", "--scale", "gpu"]), "noise")
    config = base_config(args)
    assert args.gpus_per_trial == GPU.gpus_per_trial == 1 and config.scaling.use_gpu
    assert config.method.net == REFUSION_NAFNET and config.method.max_sigma == 50.0 and config.method.T == 100
    assert config.optim.name == "lion" and config.data.patch_size == 128 and config.train.num_steps == 20_000


def test_scale_with_a_user_space_is_refused(capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["--space", "my.yaml", "--scale", "cpu"])
    assert exit_info.value.code == 2 and "--scale runs the paper studies" in capsys.readouterr().err

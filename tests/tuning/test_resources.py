"""A sweep trial's CPU and GPU requests against what the cluster reports (no Ray needed)."""

import dataclasses

import pytest

from pipelines import cli
from tuning.sweep_refusion import (Capacity, base_config, explicit_resources, fit_to_cluster, for_study, parse_args,
                                   trial_cpus)

TWO_CPUS = Capacity(cpus=2, gpus=0, node_cpus=2)


def _config(*extra: str):
    args = for_study(parse_args(["--study", "noise", "--recipe", "debug", *extra]), "noise")
    return base_config(args), explicit_resources(args)


def test_the_recipe_default_is_sized_down_to_fit_two_cpus():
    config, explicit = _config()
    assert not explicit and trial_cpus(config) > 2  # what hung: the data actor waited for a CPU forever
    fitted = fit_to_cluster(config, TWO_CPUS, explicit=explicit)
    assert trial_cpus(fitted) <= 2
    assert fitted.scaling.cpus_per_worker == fitted.data.cpus_per_worker > 0.3
    assert dataclasses.replace(fitted, scaling=config.scaling, data=config.data) == config  # nothing else changes
    # Booked less, computes as before: the worker keeps the recipe's torch threads.
    assert fitted.scaling.threads == config.scaling.threads == int(config.scaling.cpus_per_worker)


def test_a_request_that_fits_is_left_as_it_is():
    config, explicit = _config()
    assert fit_to_cluster(config, Capacity(cpus=16, gpus=0, node_cpus=16), explicit=explicit) == config


def test_no_single_worker_asks_more_than_one_node_has():
    config, explicit = _config("--set", "scaling.num_workers=2")
    fitted = fit_to_cluster(dataclasses.replace(config, scaling=dataclasses.replace(config.scaling, cpus_per_worker=4)),
                            Capacity(cpus=12, gpus=0, node_cpus=3), explicit=False)
    assert max(fitted.scaling.cpus_per_worker, fitted.data.cpus_per_worker) <= 3


@pytest.mark.parametrize("extra", [("--cpus-per-trial", "2"), ("--set", "data.cpus_per_worker=1.5")])
def test_an_explicit_request_that_cannot_be_placed_is_refused_naming_the_flags(extra):
    config, explicit = _config(*extra)
    assert explicit
    with pytest.raises(cli.UserError, match=r"needs .* CPUs .* cluster has 2 .*--cpus-per-trial.*data\.cpus_per_worker"):
        fit_to_cluster(config, TWO_CPUS, explicit=explicit)


def test_gpu_trials_on_a_cluster_without_gpus_are_refused():
    config, explicit = _config("--gpus-per-trial", "1")
    with pytest.raises(cli.UserError, match="needs 1 GPUs but the cluster has 0: lower --gpus-per-trial"):
        fit_to_cluster(config, TWO_CPUS, explicit=explicit)


def test_a_cluster_too_small_for_any_trial_is_refused():
    config, explicit = _config()
    assert trial_cpus(fit_to_cluster(config, Capacity(cpus=1, gpus=0, node_cpus=1), explicit=explicit)) <= 1
    with pytest.raises(cli.UserError, match="cluster has 0.4"):  # not even the trial's process and read task
        fit_to_cluster(config, Capacity(cpus=0.4, gpus=0, node_cpus=0.4), explicit=explicit)


def test_trials_share_the_cpus_by_the_torch_threads_they_compute_with():
    debug, _ = _config()  # 1 thread per trial: two at once on 2 CPUs
    fitted = fit_to_cluster(debug, TWO_CPUS, explicit=False)
    assert fitted.scaling.threads == 1 and 2 * trial_cpus(fitted) <= 2 < 3 * trial_cpus(fitted)
    args = for_study(parse_args(["--study", "noise", "--recipe", "demo"]), "noise")
    demo = base_config(args)  # 2 threads: one at a time, with the whole machine
    fitted = fit_to_cluster(demo, TWO_CPUS, explicit=False)
    assert fitted.scaling.threads == 2 and 1 < trial_cpus(fitted) <= 2


def test_every_recipe_default_fits_two_cpus_after_sizing():
    for name in ("debug", "demo"):
        args = for_study(parse_args(["--study", "noise", "--recipe", name]), "noise")
        assert trial_cpus(fit_to_cluster(base_config(args), TWO_CPUS, explicit=False)) <= 2, name


def test_a_one_worker_cpu_trial_trains_in_its_own_process_and_books_that_workers_cpus():
    from pipelines.data import READ_TASK_CPUS
    from tuning.sweep_refusion import DRIVER_CPUS, trial_failures, trial_resources

    def data_cpus(config) -> float:
        return READ_TASK_CPUS + config.data.num_cpu_workers * config.data.cpus_per_worker

    one, _ = _config("--cpus-per-trial", "0.5", "--set", "train.max_failures=2")
    assert one.scaling.num_workers == 0 and one.scaling.cpus_per_worker == 0.5  # Train local mode, in the trial
    assert trial_resources(one) == {"CPU": DRIVER_CPUS + 0.5} and trial_failures(one).max_failures == 2  # Tune retries
    assert trial_resources(one)["CPU"] + data_cpus(one) == trial_cpus(one)  # what fit_to_cluster sizes is booked
    two, _ = _config("--num-workers", "2", "--cpus-per-trial", "1", "--set", "train.max_failures=2")
    assert two.scaling.num_workers == 2 and two.scaling.cpus_per_worker == 0.5  # TorchTrainer workers
    assert trial_resources(two) == {"CPU": DRIVER_CPUS} and trial_failures(two).max_failures == 0  # Train retries
    assert trial_resources(two)["CPU"] + 2 * 0.5 + data_cpus(two) == trial_cpus(two)

"""Shared fixtures. `ray_local` starts one small local Ray for the whole session, only when a test asks."""

import os

import pytest

# The commands default to $MLFLOW_TRACKING_URI (as the clusters set it); the tests choose their store themselves.
for _name in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
    os.environ.pop(_name, None)


def shared_ray():
    """A local Ray with 4 logical CPUs (more than the 2 cores, so actor pools never starve) and a small store.

    Started once and shared by the tests that ask for it; a module that needs a Ray of its own (special
    environment, multi-node cluster) shuts this one down first, and the next test here starts it again.
    """
    import ray
    import ray.data

    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")
    if not ray.is_initialized():
        ray.init(
            address="local",  # always a fresh instance, even when `ray start` left a cluster running here
            num_cpus=4,
            object_store_memory=400 * 1024**2,
            include_dashboard=False,
            log_to_driver=True,
            configure_logging=False,
        )
    ray.data.DataContext.get_current().enable_progress_bars = False
    return ray


@pytest.fixture
def ray_local():
    """shared_ray() for one test (a module-scoped fixture calls shared_ray itself)."""
    return shared_ray()


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """One intra-op torch thread in the test process: on the 2-core machine the unit tests ran 11% faster so
    (42 s vs 47 s for tests/models + tests/degradations), and Ray's actors keep the other core. A training loop
    still sets its own count (one per booked CPU)."""
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session", autouse=True)
def _shutdown_ray_at_exit():
    yield
    import sys

    if "ray" in sys.modules and sys.modules["ray"].is_initialized():
        sys.modules["ray"].shutdown()


_EXIT_STATUS: dict[str, int] = {}


def pytest_sessionfinish(session, exitstatus):
    _EXIT_STATUS["code"] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """Exit with pytest's own status, skipping the interpreter's teardown of native libraries.

    After a session that starts and stops several Ray instances in this one process, the teardown of Ray's
    core worker and torch's thread pools at interpreter exit can crash (seen once here: SIGSEGV after
    "520 passed"), which would turn a green run red. Every result and report is written before this point.
    """
    if "code" in _EXIT_STATUS:
        import sys

        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_EXIT_STATUS["code"])

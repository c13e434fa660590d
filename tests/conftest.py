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


def pytest_configure(config):
    _ensure_ray_auth_token()


# `make test` runs the slow Ray tests on two pytest-xdist workers, a test file at a time (`--dist loadfile`, so a
# module's fixtures are made once). These files share another file's session fixture and go to its worker; the
# longest work units (--durations) are handed out first, so that neither worker is left with a long tail.
SAME_WORKER = {"tests/tuning/test_ui.py": "tests/tuning/test_sweep.py"}  # tests/tuning/conftest.py::two_trial_study
LONGEST_FIRST = ("tests/tuning/test_sweep.py", "tests/tuning/test_tracking_server.py", "tests/test_failures.py",
                 "tests/bench/test_gpu_check.py", "tests/cluster/test_placement.py", "tests/cluster/test_security.py")


@pytest.hookimpl(optionalhook=True)  # `pytest -p no:xdist` has no such hook
def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") != "loadfile":
        return None  # xdist's own
    from xdist.scheduler import LoadFileScheduling

    class SharedFixtureScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = super()._split_scope(nodeid)
            return SAME_WORKER.get(path, path)

        def _assign_work_unit(self, node) -> None:
            rank = {path: i for i, path in enumerate(LONGEST_FIRST)}
            for scope in sorted(self.workqueue, key=lambda scope: rank.get(scope, len(rank))):  # stable
                self.workqueue.move_to_end(scope)
            super()._assign_work_unit(node)

    return SharedFixtureScheduling(config, log)


def _ensure_ray_auth_token() -> None:
    """Write Ray's default token file (~/.ray/auth_token) before any test starts a Ray, when it is missing.

    A new local Ray generates that file when it finds none. Two first starts at once (the two pytest-xdist
    workers of `make test` on a fresh machine) would each write their own token, and the one whose file lost
    would hand its own processes the other token. This runs in the xdist controller before the workers start;
    the file is created whole or not at all (a hard link, which fails when the file exists).
    """
    if os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH"):
        return
    import secrets
    import tempfile
    from pathlib import Path

    path = Path.home() / ".ray" / "auth_token"
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=".auth_token.", delete=False) as tmp:
        tmp.write(secrets.token_hex(32))  # the format of `ray get-auth-token --generate`
    try:
        os.link(tmp.name, path)
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp.name)


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

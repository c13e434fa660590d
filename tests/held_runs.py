"""A run that a test stops at a known step (RESTORATION_TEST_HOLD in pipelines/loop.py) to kill, interrupt or
disturb it there, and waiting on such a run's process with its output shown when anything goes wrong."""

import subprocess
import time
from collections.abc import Callable
from pathlib import Path


def hold_env(marker: Path, *, step: int, nth: int = 1) -> dict[str, str]:
    """The environment that holds the nth run to checkpoint at `step` until `marker` is deleted."""
    return {"RESTORATION_TEST_HOLD": f"{step}:{nth}:{marker}"}


def wait_for(condition: Callable[[], bool], *, proc: subprocess.Popen, log: Path, timeout: float = 240) -> None:
    """Wait until condition() holds; fail with the process's output if it exits first or time runs out."""
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"the process exited with {proc.returncode} first:\n{tail(log)}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s:\n{tail(log)}")
        time.sleep(0.2)


def tail(log: Path, num_chars: int = 5000) -> str:
    return log.read_text(errors="replace")[-num_chars:] if log.exists() else "(no output)"

"""The README's sweep command, exactly as printed there, on a local Ray with 2 CPUs (this CI machine's size).

It used to hang forever: the recipe's Train worker, data actor and the data read task booked more CPUs than the
cluster had, and the data actor waited as `pending: 1 CPU`. Now the requests are sized to the cluster.
"""

import re
import shlex
import subprocess
from pathlib import Path

import pytest

from tests.held_runs import tail
from tests.tuning.conftest import ROOT, sweep_env

pytestmark = pytest.mark.slow


def readme_sweep_command() -> list[str]:
    """The README's quick sweep (the --scale cpu line next to it is the 70-minute reproduction, run by hand)."""
    lines = [line for line in (ROOT / "README.md").read_text().splitlines()
             if line.startswith(".venv/bin/python tuning/sweep_refusion.py --study") and "--scale" not in line]
    assert len(lines) == 1, lines
    return shlex.split(lines[0].split("#")[0])


def test_the_readme_sweep_finishes_on_two_cpus_with_a_line_per_trial_and_no_progress_bars(tmp_path):
    command = readme_sweep_command()
    study = command[command.index("--study") + 1]
    log_path = tmp_path / "sweep.log"
    with log_path.open("w") as log:
        result = subprocess.run([*command, "--storage-path", str(tmp_path), "--ray-address", "local", "--num-cpus", "2"],
                                cwd=ROOT, env=sweep_env(), stdout=log, stderr=subprocess.STDOUT, timeout=600)
    output = log_path.read_text()
    assert result.returncode == 0, tail(log_path)
    assert "the cluster has 2: sized to" in output, tail(log_path)
    progress = re.findall(rf"^study {study}: (\d+)/(\d+) trials done", output, flags=re.M)
    total = int(progress[-1][1])
    assert [int(done) for done, _ in progress] == list(range(1, total + 1)), progress
    assert total >= 2 and (tmp_path / "sweeps" / study / "report" / "table.md").is_file()
    assert not re.search(r"row/s|it/s\]|Running Dataset", output), "a Ray Data progress bar in the sweep's output"

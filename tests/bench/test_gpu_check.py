"""bench/gpu_check.py --dry-run: the first GPU's checklist runs end to end on the CPU, every section measured."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from bench.gpu_check import SECTIONS, STEP_LINE

ROOT = Path(__file__).resolve().parents[2]


def test_step_line_pattern_reads_the_train_loops_log_line():
    line = "step 200/200 | loss 0.0312 | lr 3.99e-05 | 41.3 samples/s | data wait 7% | ETA 0s"
    match = STEP_LINE.search(line)
    assert match is not None and match.groups() == ("200", "200", "41.3", "7")


@pytest.mark.slow
def test_dry_run_measures_every_section(tmp_path):
    out = tmp_path / "gpu_check.json"
    proc = subprocess.run([sys.executable, "-m", "bench.gpu_check", "--dry-run", "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-6000:]
    results = json.loads(out.read_text())
    assert results["dry_run"] is True and list(results["sections"]) == list(SECTIONS), log[-6000:]
    sections = {name: s["result"] for name, s in results["sections"].items()}

    rows = sections["train_step"]["rows"]
    assert [r["variant"] for r in rows] == ["fp32", "bf16", "bf16+channels_last", "bf16+channels_last+compile"]
    assert all(r["steps_per_s"] > 0 and math.isfinite(r["speedup_vs_fp32"]) for r in rows)
    assert rows[0]["speedup_vs_fp32"] == 1.0 and rows[-1]["compile_s"] > 0
    assert 0 <= sections["data_wait"]["data_wait_frac"] <= 1 and sections["data_wait"]["samples_per_s"] > 0
    assert sections["latent_restore"]["s_per_step"] > 0 and sections["latent_restore"]["image"] == "96x64"
    assert sections["osediff"]["restore_s"] > 0 and sections["osediff"]["step_s"] > 0
    assert sections["ddp"]["world_size"] == 2 and sections["ddp"]["replicas_identical"] is True
    assert "train_step (NAFNet" in proc.stdout and "data wait" in proc.stdout  # the table

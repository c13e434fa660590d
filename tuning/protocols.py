"""Scales at which `sweep_refusion.py --scale` runs Refusion's four studies (arXiv 2304.08291, Fig. 5).

A protocol fixes, per study, the base recipe, the step budget, the validations per trial, the --set overrides
and the seeds, so that every setting is trained long enough to beat its noisy input on the held-out photos and
the seed spread says whether a difference between settings is real.

- `cpu`: the demo's small NAFNet (width 16) denoising the bundled photos, 3 seeds, 33 trials in 70
  minutes on a 2-core machine (docs/results/refusion_sweeps_cpu.md). T = 10 with the posterior sampler, except
  in the steps study, which trains and samples with T = 100 and T = 1000 as the paper varied T. The optimizer
  study keeps the paper's learning-rate ratio (Adam/AdamW 1e-4 : Lion 4e-5) scaled by 40 for the tiny net.
  The patch study compares equal steps at equal batch (the paper changed GT_size alone), so 256^2 patches
  see 4x the pixels.
- `gpu`: the paper-size ConditionalNAFNet (width 64, 28 middle blocks), T = 100, max_sigma 50, Lion 4e-5 +
  cosine, patch 128, batch 4, 20k steps per trial, 3 seeds, on the user's HQ folder (`--set
  data.source.paths=[/data/hq]`). Not run here (no GPU): the official recipe trains 700k
  steps in about 3 days on one A100 (Refusion issue #126), about 2.7 steps/s, so a 20k-step trial is about
  2 h, a 256^2 trial about 4x that, and the 33 trials about 80 GPU-hours on one A100 (an estimate).
"""

from dataclasses import dataclass, field

CPU_LR_SCALE = 40.0  # tiny net, 600 steps: the paper's 1e-4 barely moves it; the Adam:Lion ratio is kept


@dataclass(frozen=True, kw_only=True, slots=True)
class StudyPlan:
    """How one study runs at a scale: training steps per trial, validations per trial, overrides."""

    budget: int
    num_reports: int = 2
    sets: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True, slots=True)
class Protocol:
    name: str
    recipe: str
    num_seeds: int  # seeds per setting, swept as `seed` 0..N-1
    lr_scale: float  # multiplies the optimizer study's paper learning rates
    plans: dict[str, StudyPlan] = field(default_factory=dict)
    gpus_per_trial: int = 0
    expected: str = ""  # expected wall time, for --help and the README

    def plan(self, study: str) -> StudyPlan:
        return self.plans[study]


CPU = Protocol(
    name="cpu",
    recipe="demo",
    num_seeds=3,
    lr_scale=CPU_LR_SCALE,
    plans={
        "noise": StudyPlan(budget=600),
        # Sampling 1000 steps on 2 x 256^2 crops would take 4 min per validation on 2 cores: 128^2 crops instead.
        "steps": StudyPlan(budget=600, num_reports=1, sets=("data.val_patch_size=128",)),
        "patch": StudyPlan(budget=400, sets=("train.batch_size=2",)),
        "optimizer": StudyPlan(budget=600),
    },
    expected="70 minutes on 2 CPU cores (69:48 measured)",
)

GPU = Protocol(
    name="gpu",
    recipe="sweep_gpu",
    num_seeds=3,
    lr_scale=1.0,
    plans={
        "noise": StudyPlan(budget=20_000, num_reports=4),
        "steps": StudyPlan(budget=20_000, num_reports=4),
        "patch": StudyPlan(budget=20_000, num_reports=4),
        "optimizer": StudyPlan(budget=20_000, num_reports=4),
    },
    gpus_per_trial=1,
    expected="about 80 GPU-hours on one A100 (estimated from the official 700k steps in ~3 days; not measured)",
)

PROTOCOLS = {p.name: p for p in (CPU, GPU)}

"""Search spaces keyed by dotted ExperimentConfig paths: the four Refusion ablations (arXiv 2304.08291, Sec. 3) and
user spaces read from YAML.

A space maps a dotted path ("optim.lr") to a value or a Tune domain. A mapping value overrides several fields
of the sub-config at that path at once ({"optim": {"name": "lion", "scheduler": "cosine"}}).
"""

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from ray import tune


@dataclass(frozen=True, kw_only=True, slots=True)
class Study:
    """One grid-searched ablation: `key` takes each value of `settings` in turn; the rest is the recipe."""

    name: str
    key: str  # dotted ExperimentConfig path
    settings: tuple[Any, ...]
    question: str  # what the study answers, for the report

    def space(self) -> dict[str, Any]:
        return {self.key: tune.grid_search(list(self.settings))}


def noise(*, num_steps: int, lr_scale: float = 1.0) -> Study:
    """IR-SDE max_sigma (0-255 scale): IR-SDE used 10-30, Refusion settled on 50."""
    return Study(name="noise", key="method.max_sigma", settings=(10.0, 30.0, 50.0, 70.0),
                 question="noise level sigma of the terminal state (lq + N(0, sigma^2))")


def steps(*, num_steps: int, lr_scale: float = 1.0) -> Study:
    """Number of SDE steps T: Refusion keeps T = 100; the denoising configs use 1000."""
    return Study(name="steps", key="method.T", settings=(100, 1000),
                 question="denoising steps T (training and sampling)")


def patch(*, num_steps: int, lr_scale: float = 1.0) -> Study:
    """Training patch size: 128 is the pixel-space default of the reference configs."""
    return Study(name="patch", key="data.patch_size", settings=(128, 256), question="training patch size P")


def optimizer(*, num_steps: int, lr_scale: float = 1.0) -> Study:
    """Optimiser + schedule: IR-SDE's Adam + MultiStep, AdamW + cosine, Refusion's Lion + cosine.

    Learning rates are the reference configs' (Adam 1e-4, Lion 4e-5) times `lr_scale` (a reduced-scale protocol
    raises all three alike, keeping their ratios); the MultiStep milestones keep ir-sde.yml's positions (200k,
    400k, 600k of 700k) relative to the budget.
    """
    milestones = sorted({max(1, round(num_steps * k / 7)) for k in (2, 4, 6)})
    return Study(
        name="optimizer",
        key="optim",
        settings=(
            {"name": "adam", "lr": 1e-4 * lr_scale, "weight_decay": 0.0, "scheduler": "multistep", "milestones": milestones,
             "gamma": 0.5},
            {"name": "adamw", "lr": 1e-4 * lr_scale, "weight_decay": 1e-2, "scheduler": "cosine", "eta_min": 1e-7},
            {"name": "lion", "lr": 4e-5 * lr_scale, "weight_decay": 0.0, "scheduler": "cosine", "eta_min": 1e-7},
        ),
        question="optimiser and learning-rate schedule",
    )


STUDIES = {f.__name__: f for f in (noise, steps, patch, optimizer)}
SEED_KEY = "seed"  # swept alongside a study's key when it runs several seeds per setting


def setting_label(values: dict[str, Any]) -> str:
    """Short human label of one trial's swept values, seed left out: "50", "lion+cosine", "0.0003,128"."""
    return ",".join(_short(v) for k, v in sorted(values.items()) if k != SEED_KEY)


def trial_label(values: dict[str, Any]) -> str:
    """setting_label plus the seed when one is swept: "50-seed1"."""
    seed = f"-seed{values[SEED_KEY]}" if SEED_KEY in values else ""
    return setting_label(values) + seed


def flat_values(values: dict[str, Any]) -> dict[str, str]:
    """{"optim": {"name": "lion"}, "method.T": 100} -> {"optim.name": "lion", "method.T": "100"} (for tags)."""
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(flat_values({f"{key}.{k}": v for k, v in value.items()}))
        else:
            flat[key] = str(value)
    return flat


def load_space(path: str | Path) -> dict[str, Any]:
    """A YAML space: `dotted.key: value` or `dotted.key: {grid|choice: [...]} / {uniform|loguniform|randint: [lo, hi]}`."""
    tree = yaml.safe_load(Path(path).read_text())
    if not isinstance(tree, dict) or not tree:
        raise ValueError(f"{path}: expected a non-empty mapping of dotted config keys")
    return {key: _domain(key, value) for key, value in tree.items()}


def is_grid_only(space: dict[str, Any]) -> bool:
    """True when every entry is a constant or a grid (so one sample covers the space)."""
    return not any(isinstance(v, tune.search.sample.Domain) for v in space.values())


def _domain(key: str, value: Any) -> Any:
    if not (isinstance(value, dict) and len(value) == 1 and next(iter(value)) in _DOMAINS):
        return value  # a constant (a mapping of sub-fields is a constant too)
    (kind, args), = value.items()
    if not isinstance(args, list) or (kind not in ("grid", "choice") and len(args) != 2):
        raise ValueError(f"{key}: {kind} expects {'a list' if kind in ('grid', 'choice') else '[low, high]'}, got {args!r}")
    return _DOMAINS[kind](args)


_DOMAINS = {
    "grid": tune.grid_search,
    "choice": tune.choice,
    "uniform": lambda a: tune.uniform(float(a[0]), float(a[1])),
    "loguniform": lambda a: tune.loguniform(float(a[0]), float(a[1])),
    "randint": lambda a: tune.randint(int(a[0]), int(a[1])),
}


def _short(value: Any) -> str:
    if isinstance(value, dict):
        return "+".join(str(v) for v in value.values() if isinstance(v, str)) or str(value)
    if isinstance(value, float):
        return f"{value:g}" if value == 0 or 1e-3 <= abs(value) < 1e4 or math.isinf(value) else f"{value:.2g}"
    return str(value)

"""Refusion's four hyperparameter claims (arXiv 2304.08291, Fig. 5) judged from per-seed held-out scores.

Each setting's score is its final held-out PSNR gain over the noisy input, one value per seed. A claim compares
its setting with the best other one: the difference of their means counts only when it exceeds the seed
spread (the larger of the two standard deviations over seeds); within it the two are tied.
"""

import statistics
from dataclasses import dataclass
from typing import Literal

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not reproduced", "inconclusive"


@dataclass(frozen=True, kw_only=True, slots=True)
class SettingScores:
    """One setting's final held-out scores, one entry per seed (PSNR in dB; LPIPS lower is better)."""

    setting: str
    seeds: tuple[int, ...]
    input_psnr: tuple[float, ...]
    psnr: tuple[float, ...]
    ssim: tuple[float, ...] = ()
    lpips: tuple[float, ...] = ()

    @property
    def gains(self) -> tuple[float, ...]:
        return tuple(out - inp for out, inp in zip(self.psnr, self.input_psnr))

    @property
    def num_beating_input(self) -> int:
        return sum(g > 0 for g in self.gains)


def mean_std(values: tuple[float, ...]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def fmt(values: tuple[float, ...], *, digits: int = 2, signed: bool = False) -> str:
    """"3.10 ± 0.21" ("+3.10 ± 0.21" when signed; empty for no values)."""
    if not values:
        return ""
    mean, std = mean_std(values)
    return f"{mean:{'+' if signed else ''}.{digits}f} ± {std:.{digits}f}"


@dataclass(frozen=True, kw_only=True, slots=True)
class Claim:
    """What the paper found: `setting` is best-or-tied, tied with the rival, or better than the rival."""

    text: str
    setting: str  # the setting label the claim is about (tuning.spaces.setting_label)
    kind: Literal["best_or_tied", "tied", "better"]


CLAIMS = {
    "noise": Claim(text="(a) max_sigma = 50 is stable: best or tied among 10, 30, 50, 70", setting="50",
                   kind="best_or_tied"),
    "steps": Claim(text="(b) T = 100 denoising steps give about the same quality as T = 1000", setting="100",
                   kind="tied"),
    "patch": Claim(text="(c) training patches of 256^2 beat 128^2", setting="256", kind="better"),
    "optimizer": Claim(text="(d) Lion + cosine is the best optimiser/scheduler", setting="lion+cosine",
                       kind="better"),
}


@dataclass(frozen=True, kw_only=True, slots=True)
class Verdict:
    claim: str
    verdict: str
    detail: str  # the numbers behind it


def judge(claim: Claim, scores: list[SettingScores]) -> Verdict:
    """The claim's verdict: `reproduced`, `not reproduced` or `inconclusive`, with the numbers."""
    by_setting = {s.setting: s for s in scores}
    if claim.setting not in by_setting or len(by_setting) < 2:
        return Verdict(claim=claim.text, verdict=INCONCLUSIVE,
                       detail=f"needs {claim.setting!r} and another setting; got {sorted(by_setting)}")
    ours = by_setting[claim.setting]
    rival = max((s for s in scores if s.setting != claim.setting), key=lambda s: mean_std(s.gains)[0])
    (mean, std), (rival_mean, rival_std) = mean_std(ours.gains), mean_std(rival.gains)
    diff, spread = mean - rival_mean, max(std, rival_std)
    detail = (f"{claim.setting}: {fmt(ours.gains, signed=True)} dB vs {rival.setting}: {fmt(rival.gains, signed=True)} dB over the input "
              f"(difference {diff:+.2f}, seed spread {spread:.2f}; {len(ours.seeds)} and {len(rival.seeds)} seeds)")
    if min(len(ours.seeds), len(rival.seeds)) < 2:
        return Verdict(claim=claim.text, verdict=INCONCLUSIVE, detail=detail + "; one seed gives no spread")
    if min(mean, rival_mean) <= 0:
        return Verdict(claim=claim.text, verdict=INCONCLUSIVE, detail=detail + "; a setting does not beat its input")
    if claim.kind == "better":
        verdict = REPRODUCED if diff > spread else NOT_REPRODUCED if diff < -spread else INCONCLUSIVE
    elif claim.kind == "tied":
        verdict = REPRODUCED if abs(diff) <= spread else NOT_REPRODUCED
        if verdict == NOT_REPRODUCED:
            detail += f"; {claim.setting if diff > 0 else rival.setting} is better beyond the spread"
    else:  # best_or_tied
        verdict = REPRODUCED if diff >= -spread else NOT_REPRODUCED
    return Verdict(claim=claim.text, verdict=verdict, detail=detail)

"""tuning/verdicts.py: each kind of claim against seed spreads that do and do not separate the settings."""

import pytest

from tuning.verdicts import CLAIMS, INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED, SettingScores, judge


def scores(setting: str, *gains: float) -> SettingScores:
    return SettingScores(setting=setting, seeds=tuple(range(len(gains))), input_psnr=(20.0,) * len(gains),
                         psnr=tuple(20.0 + g for g in gains))


@pytest.mark.parametrize(("ours", "rival", "expected"), [
    ((3.0, 3.1, 3.2), (2.0, 2.1, 2.2), REPRODUCED),  # 1 dB apart, spread 0.1
    ((2.0, 2.1, 2.2), (3.0, 3.1, 3.2), NOT_REPRODUCED),
    ((2.0, 3.0, 4.0), (2.5, 2.6, 2.7), INCONCLUSIVE),  # 0.4 dB apart, spread 1.0
])
def test_a_better_claim_counts_a_difference_only_beyond_the_seed_spread(ours, rival, expected):
    verdict = judge(CLAIMS["patch"], [scores("128", *rival), scores("256", *ours)])
    assert verdict.verdict == expected


def test_the_best_or_tied_claim_holds_within_the_spread_of_the_best_and_fails_beyond_it():
    tied = [scores("10", 1.0, 1.1, 1.2), scores("30", 3.0, 3.5, 4.0), scores("50", 2.8, 3.3, 3.8)]
    assert judge(CLAIMS["noise"], tied).verdict == REPRODUCED
    beaten = [scores("30", 3.0, 3.1, 3.2), scores("50", 2.0, 2.1, 2.2)]
    verdict = judge(CLAIMS["noise"], beaten)
    assert verdict.verdict == NOT_REPRODUCED and "vs 30:" in verdict.detail  # against the best other setting


def test_the_tied_claim_fails_when_the_settings_differ_beyond_the_spread():
    assert judge(CLAIMS["steps"], [scores("100", 3.0, 3.1, 3.2), scores("1000", 3.05, 3.1, 3.15)]).verdict == REPRODUCED
    differ = judge(CLAIMS["steps"], [scores("100", 3.0, 3.1, 3.2), scores("1000", 1.0, 1.1, 1.2)])
    assert differ.verdict == NOT_REPRODUCED and differ.detail.endswith("100 is better beyond the spread")


def test_settings_that_do_not_beat_their_input_or_have_one_seed_are_inconclusive():
    losing = judge(CLAIMS["optimizer"], [scores("adam+multistep", -2.0, -2.1, -2.2), scores("lion+cosine", 1.0, 1.1, 1.2)])
    assert losing.verdict == INCONCLUSIVE and "does not beat its input" in losing.detail
    single = judge(CLAIMS["optimizer"], [scores("adam+multistep", 1.0), scores("lion+cosine", 3.0)])
    assert single.verdict == INCONCLUSIVE and "one seed" in single.detail
    missing = judge(CLAIMS["optimizer"], [scores("adam+multistep", 1.0, 1.2)])
    assert missing.verdict == INCONCLUSIVE

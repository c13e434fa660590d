"""Validation helpers for the degradation configs' __post_init__: each raises ValueError naming the
field and the allowed values.
"""

from collections.abc import Sequence


def check_prob(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name}={value!r}: must be a probability in [0, 1]")


def check_range(name: str, value: Sequence[float], *, low: float, high: float) -> None:
    """A (lo, hi) pair with low <= lo <= hi <= high (lo == hi means a fixed value)."""
    if len(value) != 2 or not low <= value[0] <= value[1] <= high:
        raise ValueError(f"{name}={value!r}: must be (lo, hi) with {low} <= lo <= hi <= {high}")


def check_choice(name: str, value: object, allowed: Sequence[object]) -> None:
    if value not in allowed:
        raise ValueError(f"{name}={value!r}: must be one of {tuple(allowed)}")


def check_subset(name: str, values: Sequence[object], allowed: Sequence[object]) -> None:
    if len(values) == 0 or any(v not in allowed for v in values):
        raise ValueError(f"{name}={values!r}: must be a non-empty tuple of values from {tuple(allowed)}")


def check_weights(name: str, weights: Sequence[float], num: int) -> None:
    """Probabilities for `num` choices: non-negative and summing to 1."""
    if len(weights) != num or any(w < 0 for w in weights) or abs(sum(weights) - 1.0) > 1e-6:
        raise ValueError(f"{name}={weights!r}: must be {num} non-negative probabilities summing to 1")

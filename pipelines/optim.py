"""Optimiser, learning-rate schedule and EMA builders for the training loop.

Lion (Chen et al. 2023, arXiv 2302.06675) with cosine decay is Refusion's choice (arXiv 2304.08291);
Adam + MultiStep is IR-SDE's (arXiv 2301.11699). EMA follows the reference code: beta 0.995, every 10 steps.
"""

import math
from dataclasses import dataclass
from typing import Literal

import torch
from ema_pytorch import EMA
from lion_pytorch import Lion
from torch import nn

OPTIMIZERS = ("lion", "adam", "adamw")
SCHEDULERS = ("cosine", "multistep", "constant", "two_phase", "warmup_constant", "cosine_restarts")


@dataclass(frozen=True, kw_only=True, slots=True)
class OptimConfig:
    """Optimiser and per-step learning-rate schedule (the schedule is stepped once per training step)."""

    name: Literal["lion", "adam", "adamw"] = "lion"
    lr: float = 4e-5
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = 0.0
    scheduler: Literal["cosine", "multistep", "constant", "two_phase", "warmup_constant", "cosine_restarts"] = "cosine"
    eta_min: float = 1e-7  # cosine floor
    milestones: tuple[int, ...] = ()  # multistep decay steps
    gamma: float = 0.5  # multistep factor (the IR-SDE code hard-codes 0.5); two_phase: phase-B factor
    # two_phase (DiffIR stage 2's manual schedule): lr * phase_a_gamma^(it // phase_a_every) for it < phase_steps,
    # then lr * gamma^((it - phase_steps) // decay_every), restarting at lr when phase B begins.
    phase_steps: int = 0
    phase_a_every: int = 60_000
    phase_a_gamma: float = 0.1
    decay_every: int = 600_000
    warmup_steps: int = 0  # warmup_constant (MSGD): lr * min(1, (it + 1) / warmup_steps)
    # cosine_restarts (BasicSR's CosineAnnealingRestartCyclicLR, DiffIR deblurring stage 1): period i anneals
    # from restart_weights[i] * lr to eta_mins[i] over periods[i] steps (an eta_min above lr makes it rise).
    periods: tuple[int, ...] = ()
    eta_mins: tuple[float, ...] = ()
    restart_weights: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.name not in OPTIMIZERS:
            raise ValueError(f"optim.name must be one of {OPTIMIZERS}, got {self.name!r}")
        if self.scheduler not in SCHEDULERS:
            raise ValueError(f"optim.scheduler must be one of {SCHEDULERS}, got {self.scheduler!r}")
        if not self.lr > 0:
            raise ValueError(f"optim.lr must be > 0, got {self.lr}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"optim.betas must be two values in [0, 1), got {self.betas}")
        if not 0 <= self.eta_min <= self.lr:
            raise ValueError(f"optim.eta_min must be in [0, optim.lr={self.lr}], got {self.eta_min}")
        for name in ("gamma", "phase_a_gamma"):
            if not 0 < getattr(self, name) <= 1:
                raise ValueError(f"optim.{name} must be in (0, 1], got {getattr(self, name)}")
        if self.weight_decay < 0:
            raise ValueError(f"optim.weight_decay must be >= 0, got {self.weight_decay}")
        if list(self.milestones) != sorted(self.milestones):
            raise ValueError(f"optim.milestones must be increasing, got {self.milestones}")
        if self.scheduler == "multistep" and not self.milestones:
            raise ValueError("optim.milestones must be non-empty when optim.scheduler is 'multistep'")
        if self.scheduler == "cosine_restarts" and not (
                self.periods and len(self.periods) == len(self.eta_mins) == len(self.restart_weights)
                and min(self.periods) >= 1):
            raise ValueError("optim.periods, eta_mins and restart_weights need one value each per period (periods "
                             f">= 1) when optim.scheduler is 'cosine_restarts', got {self.periods}, {self.eta_mins}, "
                             f"{self.restart_weights}")
        if self.scheduler == "warmup_constant" and self.warmup_steps < 1:
            raise ValueError("optim.warmup_steps must be >= 1 when optim.scheduler is 'warmup_constant'")
        if self.phase_steps < 0 or self.phase_a_every < 1 or self.decay_every < 1:
            raise ValueError(f"optim.phase_steps must be >= 0 and phase_a_every, decay_every >= 1, got "
                             f"{self.phase_steps}, {self.phase_a_every}, {self.decay_every}")


def build_optimizer(config: OptimConfig, param_groups: list[dict]) -> torch.optim.Optimizer:
    """The optimiser over the method's trainable parameter groups."""
    kwargs = {"lr": config.lr, "betas": config.betas, "weight_decay": config.weight_decay}
    if config.name == "lion":
        return Lion(param_groups, **kwargs)
    if config.name == "adam":
        return torch.optim.Adam(param_groups, **kwargs)
    return torch.optim.AdamW(param_groups, **kwargs)


@dataclass(frozen=True, kw_only=True, slots=True)
class ScheduleSpan:
    """The stretch of the run a cosine schedule decays over: from `start_factor` x lr at `start_step` to eta_min
    at `num_steps`. A fresh run is (0, 1.0, num_steps). Resuming with a larger train.num_steps starts a new span
    at the checkpoint's step and lr, so the lr goes on falling to eta_min over the new total and never jumps
    back up (restarting the saved cosine would swing between its extremes). Saved in every checkpoint."""

    start_step: int = 0
    start_factor: float = 1.0
    num_steps: int

    def to_dict(self) -> dict:
        return {"start_step": self.start_step, "start_factor": self.start_factor, "num_steps": self.num_steps}


def cosine_factor(step: int, *, span: ScheduleSpan, floor: float) -> float:
    """lr multiplier at `step`: half a cosine from span.start_factor to `floor` (eta_min / lr) over the span."""
    progress = min(1.0, max(0.0, (step - span.start_step) / max(1, span.num_steps - span.start_step)))
    return floor + (span.start_factor - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(
    config: OptimConfig, optimizer: torch.optim.Optimizer, *, num_steps: int, span: ScheduleSpan | None = None
) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-step schedule: cosine to eta_min over `span` (default: the whole run), multistep, constant, DiffIR's
    two_phase or cosine_restarts, or MSGD's warmup_constant. Only the cosine depends on num_steps; the others are
    fixed in absolute steps."""
    if config.scheduler == "cosine":
        span = span or ScheduleSpan(num_steps=num_steps)
        floor = config.eta_min / config.lr

        def factor(step: int) -> float:  # a plain function: LambdaLR keeps it out of the state dict
            return cosine_factor(step, span=span, floor=floor)

        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    if config.scheduler == "multistep":
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(config.milestones), gamma=config.gamma)
    if config.scheduler == "two_phase":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: two_phase_factor(it, config))
    if config.scheduler == "cosine_restarts":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: cosine_restarts_factor(it, config))
    if config.scheduler == "warmup_constant":  # linear from lr / warmup_steps up to lr, then constant
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: min(1.0, (it + 1) / config.warmup_steps))
    return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)


def cosine_restarts_factor(it: int, config: OptimConfig) -> float:
    """The lr multiplier at step `it` of BasicSR's CosineAnnealingRestartCyclicLR; after the last period, its end."""
    start = 0
    for period, eta_min, weight in zip(config.periods, config.eta_mins, config.restart_weights):
        if it <= start + period:
            floor = eta_min / config.lr
            return floor + weight * 0.5 * (1 - floor) * (1 + math.cos(math.pi * (it - start) / period))
        start += period
    return config.eta_mins[-1] / config.lr


def two_phase_factor(it: int, config: OptimConfig) -> float:
    """The lr multiplier of DiffIR stage 2 at step `it` (phase A: prior only; phase B: joint)."""
    if it < config.phase_steps:
        return config.phase_a_gamma ** (it // config.phase_a_every)
    return config.gamma ** ((it - config.phase_steps) // config.decay_every)


def build_ema(net: nn.Module, *, beta: float, every: int, update_after: int = 0, warmup: bool = False,
              unaveraged_prefixes: tuple[str, ...] = ()) -> EMA:
    """ema_pytorch's EMA of the (plain, never DDP-wrapped) net; call `.update()` once after every optimiser step.

    Its semantics are the official Refusion ones (`EMA(model, beta=0.995, update_every=10)`): the first update
    copies the net, and on updates k (0-based) with k % every == 0 the EMA is a copy while k <= update_after, then
    ema <- d ema + (1 - d) net over float parameters and buffers, with d = ema_decay(k + 1, ...).
    Without warmup, d is the constant beta (ema_pytorch's min_value = beta).
    Weights named with one of `unaveraged_prefixes` are copied from the net on every update, never averaged.
    """
    names = [n for n, _ in (*net.named_parameters(), *net.named_buffers()) if n.startswith(unaveraged_prefixes)]
    ema = EMA(net, beta=beta, update_every=every, update_after_step=update_after, power=2.0 / 3.0,
              min_value=0.0 if warmup else beta, include_online_model=False, param_or_buffer_names_no_ema=set(names))
    ema.ema_model.eval()
    return ema


def ema_decay(updates: int, *, beta: float, update_after: int = 0, warmup: bool = False) -> float:
    """ema_pytorch's decay after `updates` calls to update(): 0 up to update_after + 1, then, with
    n = updates - update_after - 1, beta, or with warmup 1 - (1 + n)^(-2/3) capped at beta (Refusion's EMA)."""
    n = updates - update_after - 1
    if n <= 0:
        return 0.0
    return min(beta, 1.0 - (1.0 + n) ** (-2.0 / 3.0)) if warmup else beta


def resume_ema(ema: EMA, weights: dict, *, updates: int) -> None:
    """Load the EMA weights of a checkpoint and ema_pytorch's counter: one update per optimiser step so far."""
    ema.ema_model.load_state_dict(weights)
    ema.step.fill_(updates)
    ema.initted.fill_(updates > 0)

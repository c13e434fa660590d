import pytest
import torch
from ema_pytorch import EMA
from lion_pytorch import Lion
from torch import nn

from pipelines.optim import (
    OptimConfig,
    build_ema,
    build_optimizer,
    build_scheduler,
    cosine_restarts_factor,
    ema_decay,
    resume_ema,
)


def _params():
    return [{"params": list(nn.Linear(3, 2).parameters())}]


@pytest.mark.parametrize(("name", "cls"), [("lion", Lion), ("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW)])
def test_build_optimizer_returns_the_named_optimizer_with_its_settings(name, cls):
    optimizer = build_optimizer(OptimConfig(name=name, lr=3e-5, betas=(0.9, 0.99), weight_decay=0.01), _params())
    assert type(optimizer) is cls
    group = optimizer.param_groups[0]
    assert (group["lr"], tuple(group["betas"]), group["weight_decay"]) == (3e-5, (0.9, 0.99), 0.01)


def test_cosine_schedule_decays_to_eta_min_at_the_last_step():
    config = OptimConfig(lr=1e-3, scheduler="cosine", eta_min=1e-6)
    optimizer = build_optimizer(config, _params())
    scheduler = build_scheduler(config, optimizer, num_steps=10)
    lrs = []
    for _ in range(10):
        optimizer.step()
        scheduler.step()
        lrs.append(scheduler.get_last_lr()[0])
    assert all(a > b for a, b in zip(lrs, lrs[1:]))
    assert lrs[-1] == pytest.approx(1e-6)


def test_multistep_schedule_multiplies_by_gamma_at_each_milestone():
    config = OptimConfig(name="adam", lr=1e-4, scheduler="multistep", milestones=(2, 4), gamma=0.5)
    optimizer = build_optimizer(config, _params())
    scheduler = build_scheduler(config, optimizer, num_steps=6)
    lrs = []
    for _ in range(5):
        optimizer.step()
        scheduler.step()
        lrs.append(scheduler.get_last_lr()[0])
    assert lrs == pytest.approx([1e-4, 5e-5, 5e-5, 2.5e-5, 2.5e-5])


def test_warmup_constant_schedule_rises_linearly_then_holds_the_lr():
    config = OptimConfig(name="adam", lr=1e-4, betas=(0.5, 0.999), scheduler="warmup_constant", warmup_steps=4)
    optimizer = build_optimizer(config, _params())
    scheduler = build_scheduler(config, optimizer, num_steps=100)
    lrs = [scheduler.get_last_lr()[0]]
    for _ in range(6):
        optimizer.step()
        scheduler.step()
        lrs.append(scheduler.get_last_lr()[0])
    assert lrs == pytest.approx([2.5e-5, 5e-5, 7.5e-5, 1e-4, 1e-4, 1e-4, 1e-4])
    with pytest.raises(ValueError, match="warmup_steps"):
        OptimConfig(scheduler="warmup_constant")


def test_diffir_deblur_stage1_lr_rises_to_its_first_eta_min_then_restarts_and_decays():
    from pipelines.recipes import RECIPES

    config = RECIPES["diffir_deblur_s1"]().optim
    lr = {it: config.lr * cosine_restarts_factor(it, config) for it in (0, 46_000, 92_000, 92_001, 196_000, 300_000)}
    assert lr[0] == pytest.approx(2e-4) and lr[46_000] == pytest.approx((2e-4 + 2.85e-4) / 2)
    assert lr[92_000] == pytest.approx(2.85e-4) and lr[92_001] == pytest.approx(2e-4, rel=1e-6)
    assert lr[196_000] == pytest.approx((2e-4 + 1e-6) / 2) and lr[300_000] == pytest.approx(1e-6)
    with pytest.raises(ValueError, match="one value each per period"):
        OptimConfig(scheduler="cosine_restarts", periods=(10,), eta_mins=())


def test_optim_config_rejects_unknown_names_and_missing_milestones():
    with pytest.raises(ValueError, match="optim.name"):
        OptimConfig(name="sgd")
    with pytest.raises(ValueError, match="milestones"):
        OptimConfig(scheduler="multistep")


def _ema_pair(**kwargs):
    net = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        net.weight.fill_(0.0)
    return net, build_ema(net, **kwargs)


def test_ema_copies_first_then_moves_towards_the_net_every_n_updates_by_beta():
    net, ema = _ema_pair(beta=0.9, every=10)
    assert isinstance(ema, EMA) and not any(p.requires_grad for p in ema.ema_model.parameters())
    with torch.no_grad():
        net.weight.fill_(1.0)
    ema.update()  # update 0: ema_pytorch's initial copy
    assert torch.all(ema.ema_model.weight == 1.0)
    with torch.no_grad():
        net.weight.fill_(2.0)
    for _ in range(9):  # updates 1..9: not multiples of every
        ema.update()
    assert torch.all(ema.ema_model.weight == 1.0)
    ema.update()  # update 10: 0.9 * 1 + 0.1 * 2
    assert torch.allclose(ema.ema_model.weight, torch.full_like(ema.ema_model.weight, 1.1))


def test_ema_decay_copies_then_warms_up_like_ema_pytorch_and_caps_at_beta():
    kwargs = {"beta": 0.995, "update_after": 100, "warmup": True}
    assert ema_decay(101, **kwargs) == 0.0  # a plain copy up to update_after
    assert ema_decay(102, **kwargs) == pytest.approx(1 - 2 ** (-2 / 3))
    assert ema_decay(1101, **kwargs) == pytest.approx(1 - 1001 ** (-2 / 3))  # ~0.990
    assert ema_decay(100_000, **kwargs) == 0.995
    assert ema_decay(5, beta=0.9) == 0.9  # no update_after, no warmup: the constant beta
    for warmup in (True, False):  # the formula is the library's, update by update
        _, ema = _ema_pair(beta=0.995, every=10, update_after=100, warmup=warmup)
        for updates in range(1, 400):
            ema.update()
            assert ema.get_current_decay() == pytest.approx(ema_decay(updates, **kwargs | {"warmup": warmup}))


def test_ema_before_update_after_is_a_copy_of_the_net():
    net, ema = _ema_pair(beta=0.995, every=10, update_after=100, warmup=True)
    for value in range(1, 102):
        with torch.no_grad():
            net.weight.fill_(float(value))
        ema.update()
        if value == 100:  # update 99: not a multiple of every, the copy of update 90 stays
            assert torch.all(ema.ema_model.weight == 91.0)
    assert torch.all(ema.ema_model.weight == 101.0)  # update 100 <= update_after: still a copy


def test_a_resumed_ema_continues_as_the_uninterrupted_one():
    def run(first: int, ema=None, net=None):
        if ema is None:
            net, ema = _ema_pair(beta=0.995, every=10, update_after=20, warmup=True)
        for value in range(first, 61):
            with torch.no_grad():
                net.weight.fill_(float(value))
            ema.update()
            if value == 33:
                saved = {k: v.clone() for k, v in ema.ema_model.state_dict().items()}
        return ema, saved if first <= 33 else None

    uninterrupted, saved = run(1)
    net, resumed = _ema_pair(beta=0.995, every=10, update_after=20, warmup=True)
    resume_ema(resumed, saved, updates=33)
    run(34, resumed, net)
    assert torch.equal(resumed.ema_model.weight, uninterrupted.ema_model.weight)
    assert not torch.equal(uninterrupted.ema_model.weight, net.weight)  # it averaged, not copied


def test_two_phase_schedule_decays_in_phase_a_and_restarts_for_phase_b():
    config = OptimConfig(name="adam", lr=2e-4, scheduler="two_phase", phase_steps=10, phase_a_every=6,
                         phase_a_gamma=0.1, decay_every=4, gamma=0.5)
    optimizer = build_optimizer(config, [{"params": [nn.Parameter(torch.zeros(1))]}])
    scheduler = build_scheduler(config, optimizer, num_steps=20)
    lrs = []
    for _ in range(20):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    expected = [2e-4] * 6 + [2e-5] * 4 + [2e-4] * 4 + [1e-4] * 4 + [5e-5] * 2
    assert lrs == pytest.approx(expected)


def _lrs_after_resume(first_steps: int, total_steps: int, *, resumed_total: int) -> list[float]:
    """lr after every step: a run of `total_steps` stopped after `first_steps`, resumed to `resumed_total`."""
    import dataclasses

    import torch

    from pipelines.recipes import debug
    from pipelines.loop import build_state, restore_state

    def config(num_steps):
        base = debug()
        return dataclasses.replace(base, train=dataclasses.replace(base.train, num_steps=num_steps))

    method = debug().method.build_method()
    lrs = []
    state = build_state(config(total_steps), method, device=torch.device("cpu"), world_size=1)
    for _ in range(first_steps):
        state.optimizer.step()
        state.scheduler.step()
        state.step += 1
        lrs.append(state.scheduler.get_last_lr()[0])
    saved = {"net": state.net.state_dict(), "ema": None, "optimizer": state.optimizer.state_dict(),
             "scheduler": state.scheduler.state_dict(), "schedule": state.span.to_dict(), "step": state.step}
    resumed = build_state(config(resumed_total), method, device=torch.device("cpu"), world_size=1)
    restore_state(resumed, saved, config(resumed_total))
    while resumed.step < resumed_total:
        resumed.optimizer.step()
        resumed.scheduler.step()
        resumed.step += 1
        lrs.append(resumed.scheduler.get_last_lr()[0])
    return lrs


def test_resume_with_more_steps_continues_one_falling_schedule():
    lrs = _lrs_after_resume(8, 8, resumed_total=200)
    assert len(lrs) == 200
    assert all(b <= a for a, b in zip(lrs, lrs[1:])), "the lr jumped back up after the resume"
    assert lrs[-1] == pytest.approx(1e-4)  # the debug recipe's eta_min, reached at the new last step
    # From a checkpoint mid-way (step 4 of 8), the remaining decay spreads over the new total.
    mid = _lrs_after_resume(4, 8, resumed_total=100)
    assert all(b <= a for a, b in zip(mid, mid[1:])) and mid[-1] == pytest.approx(1e-4)
    assert mid[20] > 10 * 1e-4  # far from the floor, where the saved 8-step cosine would already be


def test_resume_with_the_same_steps_continues_the_saved_schedule_exactly():
    assert _lrs_after_resume(5, 12, resumed_total=12) == _lrs_after_resume(12, 12, resumed_total=12)


def test_ema_copies_the_unaveraged_parts_and_averages_the_rest():
    net = nn.ModuleDict({"generator": nn.Linear(2, 1, bias=False), "discriminator": nn.BatchNorm1d(1)})
    with torch.no_grad():
        for p in net.parameters():
            p.fill_(0.0)
    ema = build_ema(net, beta=0.9, every=1, unaveraged_prefixes=("discriminator.",))
    ema.update()  # the initial copy
    with torch.no_grad():
        for p in net.parameters():
            p.fill_(1.0)
        net["discriminator"].running_mean.fill_(3.0)
    ema.update()
    averaged = ema.ema_model
    assert torch.allclose(averaged["generator"].weight, torch.full((1, 2), 0.1))  # 0.9 * 0 + 0.1 * 1
    assert torch.all(averaged["discriminator"].weight == 1.0) and torch.all(averaged["discriminator"].bias == 1.0)
    assert torch.all(averaged["discriminator"].running_mean == 3.0)

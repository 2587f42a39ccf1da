"""mlpc.optim.lr_scheduler against torch.optim.lr_scheduler (2.13): lr sequences over 50 steps are equal
as floats, with two parameter groups; OneCycleLR's momentum/beta1 cycling; training runs within 1e-5."""

from __future__ import annotations

import warnings

import pytest

from mlpc import optim
from mlpc.optim import lr_scheduler as L
from tests.training.torchref import (
    assert_params_close,
    batches,
    compile_mlp,
    torch_copy,
    torch_groups,
    torch_params,
    torch_step,
)

torch = pytest.importorskip("torch", reason="torch is installed by the test extra")
T = torch.optim.lr_scheduler

GROUPS = [["0.bias", "2.bias"], ["0.weight", "2.weight"]]

SCHEDULES = {
    "StepLR": (lambda t: L.StepLR(t, step_size=7, gamma=0.5), lambda o: T.StepLR(o, step_size=7, gamma=0.5)),
    "MultiStepLR": (lambda t: L.MultiStepLR(t, [3, 10, 10, 30], gamma=0.3),
                    lambda o: T.MultiStepLR(o, [3, 10, 10, 30], gamma=0.3)),
    "ExponentialLR": (lambda t: L.ExponentialLR(t, 0.93), lambda o: T.ExponentialLR(o, 0.93)),
    "CosineAnnealingLR": (lambda t: L.CosineAnnealingLR(t, T_max=20, eta_min=1e-3),  # 50 steps: past T_max
                          lambda o: T.CosineAnnealingLR(o, T_max=20, eta_min=1e-3)),
    "LinearLR": (lambda t: L.LinearLR(t, start_factor=0.1, total_iters=10),
                 lambda o: T.LinearLR(o, start_factor=0.1, total_iters=10)),
    "OneCycleLR": (lambda t: L.OneCycleLR(t, max_lr=[0.5, 0.2], total_steps=50),
                   lambda o: T.OneCycleLR(o, max_lr=[0.5, 0.2], total_steps=50)),
    "OneCycleLR-3phase-linear": (
        lambda t: L.OneCycleLR(t, max_lr=0.3, epochs=5, steps_per_epoch=10, pct_start=0.25, three_phase=True,
                               anneal_strategy="linear", base_momentum=0.8, max_momentum=0.9),
        lambda o: T.OneCycleLR(o, max_lr=0.3, epochs=5, steps_per_epoch=10, pct_start=0.25, three_phase=True,
                               anneal_strategy="linear", base_momentum=0.8, max_momentum=0.9)),
    "SequentialLR": (
        lambda t: L.SequentialLR(t, [L.LinearLR(t, start_factor=0.1, total_iters=5),
                                     L.CosineAnnealingLR(t, T_max=45)], milestones=[5]),
        lambda o: T.SequentialLR(o, [T.LinearLR(o, start_factor=0.1, total_iters=5),
                                     T.CosineAnnealingLR(o, T_max=45)], milestones=[5])),
    "SequentialLR-3": (
        lambda t: L.SequentialLR(t, [L.ExponentialLR(t, 0.9), L.StepLR(t, 4), L.MultiStepLR(t, [30])],
                                 milestones=[10, 25]),
        lambda o: T.SequentialLR(o, [T.ExponentialLR(o, 0.9), T.StepLR(o, 4), T.MultiStepLR(o, [30])],
                                 milestones=[10, 25])),
}


def _pair(optimizer, torch_factory):
    t = compile_mlp(optimizer, param_groups=[{"params": GROUPS[0], "lr": 0.05}, {"params": GROUPS[1]}])
    tm = torch_copy(t)
    opt = torch_factory([{"params": g, "lr": grp["lr"]} for g, grp in zip(torch_groups(tm, GROUPS), t.param_groups)])
    return t, opt


def _sequence(group_values, steps: int, scheduler, torch_sched) -> tuple[list, list]:
    """The values of `steps` training steps: the constructor's, then after each scheduler step."""
    ours, theirs = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns about scheduler.step() before optimizer.step()
        for i in range(steps):
            ours.append(group_values[0]())
            theirs.append(group_values[1]())
            if i < steps - 1:
                scheduler.step()
                torch_sched.step()
    return ours, theirs


@pytest.mark.parametrize("name", list(SCHEDULES))
@pytest.mark.parametrize("opt_kind", ["sgd", "adam"])
def test_lr_sequence_equals_torch_over_50_steps(name, opt_kind):
    """lr of every group (and SGD's momentum / Adam's betas, which OneCycleLR cycles), exactly."""
    if opt_kind == "sgd":
        t, opt = _pair(optim.SGD(lr=0.1, momentum=0.9), lambda g: torch.optim.SGD(g, lr=0.1, momentum=0.9))
        key = "momentum"
    else:
        t, opt = _pair(optim.Adam(lr=0.1), lambda g: torch.optim.Adam(g, lr=0.1))
        key = "betas"
    ours, theirs = SCHEDULES[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s, ts = ours(t), theirs(opt)
    assert s.get_last_lr() == ts.get_last_lr()
    a, b = _sequence((lambda: [(g["lr"], g[key]) for g in t.param_groups],
                      lambda: [(g["lr"], g[key]) for g in opt.param_groups]), 50, s, ts)
    assert a == b
    assert s.get_last_lr() == ts.get_last_lr()
    assert t.lr == opt.param_groups[0]["lr"] and type(t.lr) is float
    assert t.compiles == 1


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_state_dict_round_trip_continues_the_schedule(name):
    """A scheduler rebuilt from its state_dict (as a checkpoint does) continues exactly."""
    t, _ = _pair(optim.SGD(lr=0.1, momentum=0.9), lambda g: torch.optim.SGD(g, lr=0.1, momentum=0.9))
    s = SCHEDULES[name][0](t)
    for _ in range(17):
        s.step()
    import json

    state = json.loads(json.dumps(s.state_dict()))
    hyper = t.hyper.state_dict()
    rest = []
    for _ in range(30):
        s.step()
        rest.append((t.lr, t.momentum))
    t.hyper.load_state_dict(hyper)
    t.schedulers = []
    s2 = L.from_state_dict(t, state)
    assert t.schedulers == [s2]
    again = []
    for _ in range(30):
        s2.step()
        again.append((t.lr, t.momentum))
    assert again == rest


def test_sgd_momentum_with_steplr_matches_torch_for_20_steps():
    t = compile_mlp(optim.SGD(lr=0.1, momentum=0.9), "llvm")
    tm = torch_copy(t)
    opt = torch.optim.SGD(tm.parameters(), lr=0.1, momentum=0.9)
    s, ts = L.StepLR(t, step_size=4, gamma=0.5), T.StepLR(opt, step_size=4, gamma=0.5)
    for x, y in batches(20):
        t.step(x, y)
        torch_step(tm, opt, x, y)
        s.step()
        ts.step()
        assert t.lr == opt.param_groups[0]["lr"]
    assert_params_close(t.parameters(), torch_params(tm))
    assert t.compiles == 1


def test_adamw_with_onecycle_matches_torch_for_20_steps():
    t = compile_mlp(optim.AdamW(lr=1e-3, weight_decay=0.01), "llvm")
    tm = torch_copy(t)
    opt = torch.optim.AdamW(tm.parameters(), lr=1e-3, weight_decay=0.01)
    s, ts = L.OneCycleLR(t, max_lr=0.05, total_steps=20), T.OneCycleLR(opt, max_lr=0.05, total_steps=20)
    for i, (x, y) in enumerate(batches(20)):
        t.step(x, y)
        torch_step(tm, opt, x, y)
        if i < 19:
            s.step()
            ts.step()
        assert (t.lr, t.betas) == (opt.param_groups[0]["lr"], opt.param_groups[0]["betas"])
    assert_params_close(t.parameters(), torch_params(tm))
    assert t.compiles == 1


def test_schedulers_are_constructed_on_a_trainer():
    with pytest.raises(TypeError, match=r"pass the trainer, e.g. StepLR\(trainer"):
        L.StepLR(optim.SGD(), step_size=2)
    t = compile_mlp(optim.SGD(lr=0.1))
    with pytest.raises(TypeError, match="compile first, then pass the trainer"):
        L.OneCycleLR(optim.SGD(), max_lr=0.1, total_steps=10)
    with pytest.raises(TypeError, match="got int"):
        L.ExponentialLR(3, gamma=0.9)
    with pytest.raises(TypeError, match="unexpected keyword argument 'verbose'"):
        L.StepLR(t, step_size=2, verbose=True)
    with pytest.raises(ValueError, match="step_size must be a positive integer"):
        L.StepLR(t, step_size=0)
    with pytest.raises(ValueError, match="last_epoch=3"):
        L.StepLR(t, step_size=2, last_epoch=3)


def test_the_base_scheduler_has_no_rule_of_its_own():
    """LRScheduler is abstract like torch's: constructing it, or a subclass without get_lr(), is refused by
    name before anything is attached or any lr changed."""
    t = compile_mlp(optim.SGD(lr=0.1))

    class NoRule(L.LRScheduler):
        pass

    for cls in (L.LRScheduler, NoRule):
        with pytest.raises(NotImplementedError, match=rf"{cls.__name__} must define get_lr\(\)"):
            cls(t)
    assert t.lr == 0.1 and t.schedulers == []


def test_onecycle_momentum_needs_a_momentum_step():
    t = compile_mlp(optim.SGD(lr=0.1))
    with pytest.raises(Exception, match="cycle_momentum=False"):
        L.OneCycleLR(t, max_lr=0.1, total_steps=10)
    assert t.schedulers == [], "a refused scheduler is not left attached"
    s = L.OneCycleLR(t, max_lr=0.1, total_steps=10, cycle_momentum=False)
    assert s.get_last_lr() == [pytest.approx(0.1 / 25, rel=1e-14)]


def test_constructor_sets_the_initial_lr_and_attaches():
    t = compile_mlp(optim.SGD(lr=0.1, momentum=0.9))
    s = L.LinearLR(t, start_factor=0.25, total_iters=4)
    assert t.lr == 0.1 * 0.25 and s.get_last_lr() == [0.025]
    assert t.schedulers == [s]
    seq = L.SequentialLR(t, [s, L.ExponentialLR(t, 0.5)], milestones=[4])
    assert t.schedulers == [seq]

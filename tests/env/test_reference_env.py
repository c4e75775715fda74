"""The NumPy oracle (tests/support/reference_env.py) against every golden trace, plus its own reset/draw rules.

Golden tolerances are those of tests/golden/README.md; the oracle is in fact bit-exact on all 27 cases
(checked by ``test_golden_bit_exact``).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import replace
from functools import cache

import numpy as np
import pytest

from tests.support.golden_cases import CASES, SLTP_CASES, load_csv, load_json
from tests.support.reference_env import RefConfig, ReferenceEnv, build_exec_bars

MONEY = ("pv", "balance", "position_size", "entry_price", "close")
BRACKETS = ("stop_loss", "take_profit")
FLAGS = ("terminated", "truncated", "done")
WIPED_STEP = ("futures_L10_gap_liquidations", 27)  # README: reward of a bankruptcy residue


@cache
def exec_bars(case: str) -> np.ndarray:
    cfg = load_json(case)["config"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bars, _ = build_exec_bars(load_csv(case), cfg["time_frames"], cfg["window_sizes"], cfg["execute_on"])
    return bars


def make_env(case: str, **overrides) -> ReferenceEnv:
    rec = load_json(case)
    return ReferenceEnv(
        exec_bars(case), RefConfig.from_dict(rec["config"], sltp=rec["engine"].endswith("SLTP"), **overrides)
    )


@cache
def replay(case: str, clear_brackets_on_close: bool = True, terminate_on_nonpositive_pv: bool = True):
    """``(reset_record, [step_record, ...])`` with the recorded actions and slippage multipliers."""
    env = make_env(
        case, clear_brackets_on_close=clear_brackets_on_close, terminate_on_nonpositive_pv=terminate_on_nonpositive_pv
    )
    first = env.reset()
    steps = [env.step(s["action"], s["slippage_u"]) for s in load_json(case)["steps"]]
    return first, steps


def money_err(got: float, want: float, cash: float) -> float:
    """Error in units of the README tolerance ``1e-9 |b| + 1e-9 initial_cash`` (<= 1 passes)."""
    return abs(got - want) / (1e-9 * abs(want) + 1e-9 * cash)


def case_errors(case: str, clear_brackets_on_close: bool = True) -> dict[str, float]:
    """Largest error per field over the whole case (money in tolerance units, reward absolute)."""
    rec = load_json(case)
    cash = float(rec["config"]["initial_cash"])
    _, got = replay(case, clear_brackets_on_close)
    err: dict[str, float] = {}
    for t, (g, w) in enumerate(zip(got, rec["steps"], strict=True), start=1):
        fields = MONEY + (BRACKETS if "stop_loss" in w else ())
        for k in fields:
            if k in BRACKETS and clear_brackets_on_close and w["position_size"] == 0:
                continue
            err[k] = max(err.get(k, 0.0), money_err(g[k], w[k], cash))
        if (case, t) != WIPED_STEP:
            err["reward"] = max(err.get("reward", 0.0), abs(g["reward"] - w["reward"]))
    return err


@pytest.mark.parametrize("case", CASES)
def test_golden_replay(case):
    rec = load_json(case)
    cash = float(rec["config"]["initial_cash"])
    first, got = replay(case)
    r0 = rec["reset"]
    assert first["balance"] == r0["balance"] and first["pv"] == r0["pv"] and first["close"] == r0["close"]
    np.testing.assert_array_equal(first["account_state"], np.asarray(r0["account_state"], np.float32))
    if "bar_ohlc" in r0:
        assert first["bar_ohlc"] == tuple(r0["bar_ohlc"])
    for t, (g, w) in enumerate(zip(got, rec["steps"], strict=True), start=1):
        where = f"{case} step {t}"
        assert g["kind"] == w["kind"], where
        for k in FLAGS:
            assert g[k] == w[k], f"{where}: {k}"
        assert g["exhausted"] == w.get("exhausted", False), where
        assert g["hold_counter"] == w["hold_counter"], where
        assert g["drew"] == (w["slippage_u"] is not None), f"{where}: draw"
        for k in MONEY:
            assert money_err(g[k], w[k], cash) <= 1.0, f"{where}: {k} {g[k]!r} != {w[k]!r}"
        if "stop_loss" in w:
            for k in BRACKETS:
                if w["position_size"] != 0:
                    assert money_err(g[k], w[k], cash) <= 1.0, f"{where}: {k}"
                else:  # Q26 fix: a flat account never carries brackets
                    assert g[k] == 0.0, f"{where}: {k}"
        if (case, t) == WIPED_STEP:
            assert g["reward"] == -10.0 or abs(g["reward"] - w["reward"]) <= 1e-6, where
        else:
            assert abs(g["reward"] - w["reward"]) <= 1e-6, f"{where}: reward {g['reward']} != {w['reward']}"
        np.testing.assert_array_equal(g["account_state"], np.asarray(w["account_state"], np.float32), where)
        if "bar_ohlc" in w:
            assert g["bar_ohlc"] == tuple(w["bar_ohlc"]), where


@pytest.mark.parametrize("case", SLTP_CASES)
def test_golden_original_brackets(case):
    """With the Q26 fix off, the stale SL/TP values after a close or liquidation are reproduced too."""
    _, got = replay(case, clear_brackets_on_close=False)
    for t, (g, w) in enumerate(zip(got, load_json(case)["steps"], strict=True), start=1):
        assert (g["stop_loss"], g["take_profit"]) == (w["stop_loss"], w["take_profit"]), f"{case} step {t}"


@pytest.mark.parametrize("case", CASES)
def test_golden_bit_exact(case):
    """Stronger than the README tolerances: every money value and reward is bit-identical."""
    _, got = replay(case, clear_brackets_on_close=False)
    for t, (g, w) in enumerate(zip(got, load_json(case)["steps"], strict=True), start=1):
        fields = MONEY + ("reward",) + (BRACKETS if "stop_loss" in w else ())
        assert [g[k] for k in fields] == [w[k] for k in fields], f"{case} step {t}"


def test_q2_changes_no_golden_step():
    """Q2 (terminate on PV <= 0) only differs when bankrupt_threshold == 0; no golden case has that."""
    for case in CASES:
        _, fixed = replay(case)
        _, orig = replay(case, terminate_on_nonpositive_pv=False)
        assert [s["terminated"] for s in fixed] == [s["terminated"] for s in orig], case


# ---- synthetic scenarios -----------------------------------------------------------------------------------


def bars(rows) -> np.ndarray:
    """``[[O, H, lo, C], ...]`` or plain closes -> ``[T, 4]`` float32."""
    out = [(r, r, r, r) if np.isscalar(r) else r for r in rows]
    return np.asarray(out, np.float32)


def test_q2_terminates_on_zero_pv():
    """Worked C with bankrupt_threshold=0: the gap wipes the account (PV 0)."""
    ohlc = bars([100, 100, 100, (75, 75, 69.5, 70), 70])
    cfg = dict(random_start=False, initial_cash=1000, leverage=5, transaction_fee=0.0005, bankrupt_threshold=0.0)
    for fix in (True, False):
        env = ReferenceEnv(ohlc, RefConfig(**cfg, terminate_on_nonpositive_pv=fix))
        env.reset()
        out = [env.step(2) for _ in range(3)]
        assert [o["kind"] for o in out] == ["long", "hold", "liquidation"]
        assert out[-1]["pv"] == 0.0 and out[-1]["reward"] == -10.0
        assert out[-1]["terminated"] is fix and out[-1]["done"] is fix
        with pytest.raises(ValueError, match="previous portfolio value"):
            env.step(1)  # TorchTrade's reward raises here; with the fix the episode has ended


def test_q26_clears_brackets_on_action_close():
    ohlc = bars([100, 100, 101, 101, 101])
    cfg = RefConfig(
        random_start=False,
        initial_cash=1000,
        sltp=True,
        leverage=2,
        include_close_action=True,
        stoploss_levels=(-0.05,),
        takeprofit_levels=(0.05,),
    )
    assert cfg.action_map() == [
        ("hold", None, None),
        ("close", None, None),
        ("long", -0.05, 0.05),
        ("short", 0.05, -0.05),
    ]
    for fix in (True, False):
        env = ReferenceEnv(ohlc, replace(cfg, clear_brackets_on_close=fix))
        env.reset()
        o = env.step(2)
        assert o["kind"] == "long" and o["stop_loss"] == 100 * 0.95 and o["take_profit"] == 100 * 1.05
        o = env.step(1)
        assert o["kind"] == "close" and o["position_size"] == 0.0
        assert (o["stop_loss"] == 0.0) is fix


def test_windows_and_cash_draws():
    T = 10
    ohlc = bars(np.linspace(100, 110, T))
    env = ReferenceEnv(ohlc, RefConfig(random_start=True, max_traj_length=4, initial_cash=(5, 7), seed=3))
    starts, cashes = set(), set()
    for _ in range(300):
        r = env.reset()
        starts.add(env.start)
        cashes.add(r["balance"])
        assert env.end == min(env.start + 4, T)
    assert starts == set(range(0, T - 4 + 1)) and cashes == {5.0, 6.0, 7.0}
    env = ReferenceEnv(ohlc, RefConfig(random_start=True, seed=0))
    assert {env.reset()["index"] for _ in range(400)} == set(range(T))
    assert env.reset(start=T - 1)["index"] == T - 1
    out = env.step(0)  # a 0-step episode: the first step is the exhaustion response
    assert out["exhausted"] and out["truncated"] and not out["terminated"] and out["reward"] == 0.0
    with pytest.raises(ValueError, match="start"):
        env.reset(start=T)


def test_episode_length_and_truncation():
    env = ReferenceEnv(bars(np.full(10, 100.0)), RefConfig(random_start=False, max_traj_length=4))
    env.reset()
    out = [env.step(1) for _ in range(5)]
    assert [o["truncated"] for o in out] == [False, False, True, True, True]
    assert [o["exhausted"] for o in out] == [False, False, False, True, True]
    assert [o["drew"] for o in out] == [True, True, True, False, False]
    np.testing.assert_array_equal(out[3]["account_state"], out[2]["account_state"])
    assert out[3]["reward"] == 0.0 and out[4]["index"] == out[2]["index"] == 3


def test_internal_slippage_draws():
    s = 0.01
    env = ReferenceEnv(bars(np.full(200, 100.0)), RefConfig(random_start=False, slippage=s, seed=1))
    env.reset()
    us = [env.step(1)["slippage_u"] for _ in range(150)]
    assert all(float(np.float32(u)) == u and 1 - s - 1e-7 <= u <= 1 + s + 1e-7 for u in us)
    assert len(set(us)) > 100
    env = ReferenceEnv(bars(np.full(20, 100.0)), RefConfig(random_start=False))
    env.reset()
    assert {env.step(2)["slippage_u"] for _ in range(10)} == {1.0}


def test_sltp_draw_policy():
    cfg = RefConfig(
        random_start=False,
        sltp=True,
        leverage=3,
        include_close_action=True,
        lock_position_until_sltp=True,
        stoploss_levels=(-0.5,),
        takeprofit_levels=(0.5,),
    )
    env = ReferenceEnv(bars(np.full(20, 100.0)), cfg)
    env.reset()
    # hold, close while flat, open long, locked long/short/close
    drew = [env.step(a)["drew"] for a in (0, 1, 2, 3, 1, 2)]
    assert drew == [False, False, True, False, False, False]
    assert env.q > 0 and env.hold == 4


def test_observation_layout():
    T = 6
    win = np.arange(T * 3, dtype=np.float32).reshape(T, 3)
    for w in (win, lambda i: win[i]):
        env = ReferenceEnv(bars(np.full(T, 100.0)), RefConfig(random_start=False, leverage=2), windows=w)
        r = env.reset()
        np.testing.assert_array_equal(r["obs"], np.r_[win[0], [0, 0, 0, 0, 2, 1]].astype(np.float32))
        o = env.step(2)
        assert o["obs"].dtype == np.float32 and o["obs"].shape == (9,)
        np.testing.assert_array_equal(o["obs"][:3], win[1])
        np.testing.assert_array_equal(o["obs"][3:], o["account_state"])


@pytest.mark.parametrize(
    "bad",
    [
        dict(leverage=0.5),
        dict(slippage=1.0),
        dict(action_levels=(0.0,)),
        dict(action_levels=(0, 0.5, 0.5)),
        dict(leverage=3, transaction_fee=0.004),
        dict(sltp=True, leverage=10, transaction_fee=0.01),
        dict(sltp=True, stoploss_levels=(0.1,)),
        dict(sltp=True, trade_mode="fixed"),
        dict(max_traj_length=0),
    ],
)
def test_validation(bad):
    with pytest.raises(ValueError):
        ReferenceEnv(bars([100, 100]), RefConfig(**bad))


def test_worked_c_numbers():
    """Spec §9 C: the gap liquidation fills at the bankruptcy price 80/0.9995."""
    _, got = replay("worked_C")
    e = 100.0
    assert math.isclose(e * ((1 - 1 / 5) / (1 - 0.0005)), 80.04002, rel_tol=1e-7)
    assert got[-1]["kind"] == "liquidation" and got[-1]["pv"] == 0.0 and got[-1]["terminated"]

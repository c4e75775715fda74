"""The JAX env (x64) against the independent NumPy oracle `tests/support/reference_env.py`, step by step.

Hypothesis draws configs (spot and futures, L in {1, 2, 3, 5, 10, 25}, 2-6 unique levels in [-1, 1]
including fractional ones, fees that pass validation, slippage, mmr, bankrupt_threshold including 0, cash
ranges, max_traj_length; bracket mode with random stop/target lists, hold/close flags, lock and the three
trade modes), action sequences (sticky, so the same-action shortcut fires) and injected slippage
multipliers, on generated OHLCV with gapped opens, wild wicks and empty execution bins (so liquidations,
bankruptcy clamps, brackets and refusals all happen). Spec §7 item 60 is the TorchTrade form of this check
(scalar == vectorized(N=1) at 1e-9); the JAX form is JAX env == oracle, lane by lane.

Compile budget: every example shares ONE compiled scan per static signature (plain / bracket x trade mode).
The data length, window and feature layout are fixed, the action tables are padded to a fixed size, and all
numbers (prices, levels, leverage, fee, ...) travel in `EnvParams`. `test_vmapped_configs_match_oracle`
runs one vmapped program over many configs at once.

Tolerances: money `|got - want| <= 1e-9 (|want| + cash)`, reward 2e-6, labels / flags / hold counter exact,
account_state 1e-5. XLA:CPU fuses multiply-adds (see test_env_golden.py), so x64 money differs from the
oracle in the last bits; the one place such a bit decides an outcome is an all-in position wiped at its
bankruptcy price (PV = a rounding residue, 0 or a tiny positive number, docs/semantics.md §3.10). Such a step must agree
on money, and its reward must be -10 or the log of the env's own residue; the comparison stops there. SL/TP
are compared while a position is open; when flat the env must hold zeros (Q26), whereas the oracle keeps
the brackets of a zero-size "open" made by a wiped account.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import trading_jax as tj
from tests.support.env_testlib import runner, wild_frame
from tests.support.reference_env import RefConfig, ReferenceEnv
from trading_jax.env import ActionKind, TradingEnv

NUM_BARS = 40  # execution bars of every generated frame
DROPPED = (7, 8, 23)  # exec bars with no input row (empty bins -> flat bars); fixed, so shapes are fixed
NUM_STEPS = 46  # > NUM_BARS: long episodes run past the end of data (exhaustion responses)
MAX_LEVELS = 6
MAX_BRACKET_ACTIONS = 2 + 2 * 3 * 3
LEVERAGES = (1, 2, 3, 5, 10, 25)
MARKET = dict(time_frames="1Min", execute_on="1Min", window_sizes=2)
SETTINGS = settings(
    max_examples=400, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# ---------------------------------------------------------------------------------------------- data
_MARKETS: dict[tuple, tj.Market] = {}


def market_for(seed, vol, gap_p, wick_p) -> tj.Market:
    key = (seed, vol, gap_p, wick_p)
    if key not in _MARKETS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the empty bins warn
            _MARKETS[key] = tj.build_market(wild_frame(*key, num_bars=NUM_BARS, drop=DROPPED), **MARKET)
    market = _MARKETS[key]
    assert market.num_bars == NUM_BARS
    return market


# ---------------------------------------------------------------------------------------------- configs
def max_fee(L, mmr, long, short):
    """Largest fee that passes the fee-fits-maintenance check (docs/semantics.md §2.1), a hair below the bound."""
    if L <= 1:
        return 0.02
    cs = ([1 - 1 / L + mmr] if long else []) + ([1 + 1 / L - mmr] if short else [])
    return 0.9999 * mmr / max(cs) if cs else 0.02


@st.composite
def money_fields(draw, *, long, short_if_futures):
    L = draw(st.sampled_from(LEVERAGES))
    mmr = draw(st.sampled_from([0.004, 0.005, 0.0]) | st.floats(0.001, 0.05))
    fee = draw(st.sampled_from([0.0, 1.0]) | st.floats(0.0, 1.0)) * max_fee(L, mmr, long, short_if_futures)
    lo = draw(st.integers(50, 100_000))
    return dict(
        leverage=L,
        maintenance_margin_rate=mmr,
        transaction_fee=fee,
        slippage=draw(st.sampled_from([0.0, 0.01]) | st.floats(0.0, 0.1)),
        bankrupt_threshold=draw(st.sampled_from([0.0, 0.1]) | st.floats(0.0, 0.95)),
        initial_cash=(lo, lo + draw(st.sampled_from([0, 1]) | st.integers(0, 1000))),
        max_traj_length=draw(st.none() | st.integers(2, NUM_BARS + 5)),
    )


LEVEL = st.sampled_from([-1.0, -0.5, 0.0, 0.5, 1.0]) | st.floats(-1, 1).map(lambda x: round(x, 4) + 0.0)


@st.composite
def plain_configs(draw):
    levels = tuple(draw(st.lists(LEVEL, min_size=2, max_size=MAX_LEVELS, unique=True)))
    money = draw(money_fields(long=any(a > 0 for a in levels), short_if_futures=any(a < 0 for a in levels)))
    return dict(money, action_levels=levels)


@st.composite
def bracket_configs(draw):
    trade_mode = draw(st.sampled_from(["fractional", "notional", "quantity"]))
    money = draw(money_fields(long=True, short_if_futures=True))
    cfg = dict(
        money,
        sltp=True,
        trade_mode=trade_mode,
        stoploss_levels=tuple(draw(st.lists(st.floats(-0.4, -0.002), min_size=1, max_size=3, unique=True))),
        takeprofit_levels=tuple(draw(st.lists(st.floats(0.002, 0.4), min_size=1, max_size=3, unique=True))),
        include_hold_action=draw(st.booleans()),
        include_close_action=draw(st.booleans()),
        lock_position_until_sltp=draw(st.booleans()),
        position_fraction=draw(st.sampled_from([1.0]) | st.floats(0.01, 1.0)),
    )
    lo = cfg["initial_cash"][0]
    if trade_mode == "notional":  # quote currency: sometimes more than the account can pay
        cfg["quantity_per_trade"] = lo * draw(st.floats(0.01, 3.0))
    elif trade_mode == "quantity":  # base units at a price near 100
        cfg["quantity_per_trade"] = lo / 100 * draw(st.floats(0.01, 3.0))
    return cfg


@st.composite
def scenarios(draw, config_strategy):
    cfg = draw(config_strategy)
    market = (
        draw(st.integers(0, 2**16)),
        draw(st.sampled_from([0.002, 0.01, 0.03])),
        draw(st.sampled_from([0.0, 0.1, 0.3])),
        draw(st.sampled_from([0.0, 0.1, 0.3])),
    )
    raw = draw(st.lists(st.integers(0, 255), min_size=NUM_STEPS, max_size=NUM_STEPS))
    noise = draw(st.integers(0, 2**16))
    reset_key = draw(st.integers(0, 2**16))
    return cfg, market, raw, noise, reset_key


# ---------------------------------------------------------------------------------------------- replay
def padded_params(env: TradingEnv) -> tj.EnvParams:
    """Default params with the action tables padded to a fixed size (never-chosen entries)."""
    params = env.default_params
    if env.config.sltp:
        pad = MAX_BRACKET_ACTIONS - env.num_actions
        return params.replace(
            bracket_side=jnp.pad(params.bracket_side, (0, pad)),
            bracket_sl=jnp.pad(params.bracket_sl, (0, pad)),
            bracket_tp=jnp.pad(params.bracket_tp, (0, pad)),
        )
    # padding with 0.0 keeps `any(level < 0)` (allows_short) unchanged
    return params.replace(action_levels=jnp.pad(params.action_levels, (0, MAX_LEVELS - env.num_actions)))


def sticky_actions(raw, n):
    """Map raw draws to action indices; a draw >= 128 repeats the previous action."""
    out, prev = [], 0
    for v in raw:
        prev = prev if v >= 128 else v % n
        out.append(prev)
    return out


def multipliers(noise_seed, s, n):
    rng = np.random.default_rng(noise_seed)
    x = rng.uniform(-1.0, 1.0, n)
    x[rng.random(n) < 0.1] = rng.choice([-1.0, 1.0])  # the band's edges too
    return (1.0 + s * x).astype(np.float32)


def build(cfg: dict, market_key) -> tuple[TradingEnv, tj.EnvParams, RefConfig]:
    market = market_for(*market_key)
    env_cfg = tj.EnvConfig(**MARKET, random_start=True, **cfg)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Negative action_levels")  # spot configs with negative levels
        env = TradingEnv(market, env_cfg)
    with jax.enable_x64(True):  # float64 money params
        params = padded_params(env)
    return env, params, RefConfig(random_start=True, **cfg)


def money_ok(got, want, cash):
    return abs(got - want) <= 1e-9 * (abs(want) + cash)


def compare(env, params, ref_cfg, actions, slips, key, ctx=""):
    """Replay on both engines from the JAX reset (its start and cash go to the oracle); assert equality."""
    with jax.enable_x64(True):
        state = env.reset_state(jax.random.PRNGKey(key), params)
        start, cash = int(state.start), float(state.balance)
        _, rows = runner(env)(state, jnp.asarray(actions, jnp.int32), jnp.asarray(slips), params)
        rows = jax.tree.map(np.asarray, rows)
    check_against_oracle(env, rows, ref_cfg, start, cash, int(state.end), actions, slips, ctx)
    return rows


def check_against_oracle(env, rows, ref_cfg, start, cash, end, actions, slips, ctx=""):
    lo, hi = ref_cfg.initial_cash
    assert lo <= cash <= hi and cash == int(cash), f"cash draw {cash} outside the integer range [{lo}, {hi}]"
    ref = ReferenceEnv(np.asarray(env.market.data.ohlc), ref_cfg)
    first = ref.reset(start=start, cash=cash)
    assert ref.end == end, f"{ctx}: episode end {end} != oracle {ref.end}"
    assert not first["done"]
    for t, (a, u) in enumerate(zip(actions, slips, strict=True)):
        if ref.pv <= 0:  # the episode terminated on a wiped account (Q2); the oracle refuses to go on
            break
        want = ref.step(int(a), float(u))
        where = f"{ctx} step {t + 1} (action {a}, u {u!r}, bar {want['index']})"
        fields = [("pv", "pv"), ("balance", "balance"), ("position", "position_size"), ("entry", "entry_price")]
        if want["position_size"] != 0:
            fields += [("stop_loss", "stop_loss"), ("take_profit", "take_profit")]
        else:  # Q26: no brackets without a position (the oracle keeps those of a zero-size open of a wiped account)
            assert rows["stop_loss"][t] == 0 and rows["take_profit"][t] == 0, f"{where}: stale brackets"
        for got_key, want_key in fields:
            g, w = float(rows[got_key][t]), float(want[want_key])
            assert money_ok(g, w, cash), f"{where}: {got_key} {g!r} != oracle {w!r}\n{want}"
        assert ActionKind(int(rows["kind"][t])).label == want["kind"], f"{where}: kind {rows['kind'][t]}"
        assert int(rows["bar"][t]) == want["index"], where
        assert int(rows["hold"][t]) == want["hold_counter"], f"{where}: hold"
        assert bool(rows["exhausted"][t]) == want["exhausted"], f"{where}: exhausted"
        assert bool(rows["truncated"][t]) == want["truncated"], f"{where}: truncated"
        if abs(want["pv"]) <= 1e-9 * cash and want["kind"] == "liquidation":
            # A wipe at the bankruptcy price: PV is a rounding residue on both sides (module docstring), so
            # the reward is -10 or the log of that residue; each side's must match its own PV.
            old = float(rows["pv"][t - 1]) if t else cash
            new_pv = float(rows["pv"][t])
            want_reward = -10.0 if new_pv <= 0 else float(np.float32(np.log(new_pv / old)))
            np.testing.assert_allclose(rows["reward"][t], want_reward, rtol=1e-6, err_msg=f"{where}: wiped")
            break
        assert bool(rows["terminated"][t]) == want["terminated"], f"{where}: terminated"
        np.testing.assert_allclose(rows["reward"][t], want["reward"], rtol=0, atol=2e-6, err_msg=where)
        np.testing.assert_allclose(rows["obs"][t, -6:], want["account_state"], rtol=1e-5, atol=1e-5,
                                   err_msg=f"{where}: account_state")  # fmt: skip


def _run_scenario(scenario):
    cfg, market_key, raw, noise, key = scenario
    env, params, ref_cfg = build(cfg, market_key)
    actions = sticky_actions(raw, env.num_actions)
    slips = multipliers(noise, cfg["slippage"], NUM_STEPS)
    compare(env, params, ref_cfg, actions, slips, key, ctx=f"{cfg} market={market_key}")


# ---------------------------------------------------------------------------------------------- tests
@SETTINGS
@given(scenarios(plain_configs()))
def test_plain_env_matches_oracle(scenario):
    """Fractional-level env (docs/semantics.md §3) == NumPy oracle, step by step (§7 item 60, JAX form)."""
    _run_scenario(scenario)


@settings(SETTINGS, max_examples=300)
@given(scenarios(bracket_configs()))
def test_bracket_env_matches_oracle(scenario):
    """Bracket env (docs/semantics.md §4) == NumPy oracle, step by step, in all three trade modes (items 23-31, 60)."""
    _run_scenario(scenario)


def test_oracle_run_covers_the_hard_paths():
    """The generated scenarios do reach liquidations, clamps, refusals, brackets and exhaustion.

    (A guard for the two property tests above: if the data generator or the config ranges drift, the
    oracle comparison could silently stop exercising the interesting branches.)
    """
    rng = np.random.default_rng(3)
    seen = set()
    for i in range(24):
        L = LEVERAGES[i % len(LEVERAGES)]
        cfg = dict(leverage=L, transaction_fee=0.0005 if L < 10 else 0.0, slippage=0.01, initial_cash=(1000, 1000),
                   action_levels=(-1.0, -0.3, 0.0, 0.5, 1.0), bankrupt_threshold=0.0, max_traj_length=None)
        if i % 2:
            cfg.update(sltp=True, stoploss_levels=(-0.05,), takeprofit_levels=(0.05, 0.2), include_close_action=True)
        env, params, ref_cfg = build(cfg, (int(rng.integers(1000)), 0.01, 0.3, 0.3))
        actions = sticky_actions(rng.integers(0, 256, NUM_STEPS).tolist(), env.num_actions)
        rows = compare(env, params, ref_cfg, actions, multipliers(i, 0.01, NUM_STEPS), 0, ctx=str(cfg))
        seen |= {ActionKind(int(k)).label for k in rows["kind"]}
        seen |= {"exhausted"} if rows["exhausted"].any() else set()
    for label in ("liquidation", "sltp_sl", "sltp_tp", "long", "short", "flat", "close", "exhausted"):
        assert label in seen, f"no {label} in the covered scenarios: {sorted(seen)}"


# ---------------------------------------------------------------------------------------------- vmap
def _random_plain_config(rng):
    n = int(rng.integers(2, MAX_LEVELS + 1))
    levels = tuple(float(x) for x in np.unique(np.round(rng.uniform(-1, 1, n), 3)))
    if len(levels) < 2:
        levels = (0.0, 1.0)
    L = float(rng.choice(LEVERAGES))
    mmr = float(rng.choice([0.004, 0.01]))
    long, short = any(a > 0 for a in levels), any(a < 0 for a in levels)
    lo = int(rng.integers(100, 10_000))
    return dict(
        action_levels=levels, leverage=L, maintenance_margin_rate=mmr,
        transaction_fee=float(rng.uniform(0, 1)) * max_fee(L, mmr, long, short),
        slippage=float(rng.choice([0.0, 0.02])), bankrupt_threshold=float(rng.choice([0.0, 0.3])),
        initial_cash=(lo, lo + int(rng.integers(0, 50))),
        max_traj_length=None if rng.random() < 0.5 else int(rng.integers(2, NUM_BARS)),
    )  # fmt: skip


def test_vmapped_configs_match_oracle():
    """ONE compiled, vmapped replay over 48 configs x price paths (params are a pytree): each lane == oracle."""
    rng = np.random.default_rng(11)
    lanes = []
    for i in range(48):
        cfg = _random_plain_config(rng)
        market_key = (int(rng.integers(1 << 16)), float(rng.choice([0.01, 0.03])), 0.2, 0.2)
        env, params, ref_cfg = build(cfg, market_key)
        actions = sticky_actions(rng.integers(0, 256, NUM_STEPS).tolist(), env.num_actions)
        lanes.append((env, params, ref_cfg, actions, multipliers(i, cfg["slippage"], NUM_STEPS)))
    env0 = lanes[0][0]
    with jax.enable_x64(True):
        params = jax.tree.map(lambda *xs: jnp.stack(xs), *[lane[1] for lane in lanes])
        keys = jax.random.split(jax.random.PRNGKey(5), len(lanes))
        states = jax.vmap(env0.reset_state)(keys, params)
        actions = jnp.asarray([lane[3] for lane in lanes], jnp.int32)
        slips = jnp.asarray(np.stack([lane[4] for lane in lanes]))
        _, rows = jax.jit(jax.vmap(runner(env0)))(states, actions, slips, params)
        rows = jax.tree.map(np.asarray, rows)
    for i, (env, _, ref_cfg, acts, us) in enumerate(lanes):
        lane = {k: v[i] for k, v in rows.items()}
        start, cash, end = int(states.start[i]), float(states.balance[i]), int(states.end[i])
        check_against_oracle(env, lane, ref_cfg, start, cash, end, acts, us, ctx=f"lane {i} {ref_cfg}")

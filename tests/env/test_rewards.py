"""Rewards (docs/semantics.md §3.12, §7 item 61, Q31): the default log return, its -10 rule, custom 2- and 3-argument
reward functions under jit + vmap, and host-side validation of a reward function's signature."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import trading_jax as tj
from tests.support.env_testlib import make, minute_frame, run_script, wild_frame
from trading_jax.rewards import BANKRUPT_REWARD, drawdown_penalty_reward, log_return_reward, reward_arity

FRAME = wild_frame(7, 0.03, 0.2, 0.2, num_bars=30)
LEVELS = (-1.0, -0.5, 0.0, 0.5, 1.0)


def test_log_return_reward_is_batched():
    """Spec §7 item 61 / §3.12: the batched default equals ln(new / old) element-wise for any shape, and
    is -10 where the new PV is <= 0. A non-positive OLD PV cannot raise inside jit (TorchTrade raises,
    naming the lanes); it gives 0, and with the Q2 fix such a lane has already terminated."""
    old = jnp.asarray([[1000.0, 500.0, 10.0], [1.0, 2.0, 0.0]])
    new = jnp.asarray([[1100.0, 250.0, 0.0], [-3.0, 2.0, 5.0]])
    r = np.asarray(jax.jit(log_return_reward)(old, new))
    assert r.shape == (2, 3)
    np.testing.assert_allclose(r[0, :2], np.log([1.1, 0.5]), rtol=1e-6)
    assert r[0, 2] == BANKRUPT_REWARD == -10.0 and r[1, 0] == -10.0
    assert r[1, 1] == 0.0 and r[1, 2] == 0.0
    assert np.isfinite(r).all()


def test_episode_rewards_sum_to_the_log_growth():
    """Spec §3.12: without a -10, the default rewards of an episode sum to ln(PV_final / PV_initial); each
    step's reward is float32(ln(PV_t / PV_t-1)) (x64 money)."""
    with jax.enable_x64(True):
        env, params = make(FRAME, leverage=2, action_levels=LEVELS, transaction_fee=0.0005)
        actions = np.random.default_rng(0).integers(0, 5, 29)
        reset, rows = run_script(env, params, actions)
    pv = np.concatenate([[reset["pv"]], rows["pv"]])
    live = ~rows["exhausted"]
    assert live.sum() >= 20 and not (rows["reward"] == -10).any()
    np.testing.assert_allclose(rows["reward"][live], np.log(pv[1:] / pv[:-1])[live].astype(np.float32), rtol=1e-6,
                               atol=1e-7)  # fmt: skip
    np.testing.assert_allclose(rows["reward"].astype(np.float64).sum(), np.log(pv[-1] / pv[0]), atol=1e-5)


def _numpy_drawdown_rewards(pv0, pvs, threshold=0.1, penalty=5.0):
    """(rewards, penalised) by a plain loop: log return minus penalty * drawdown beyond the threshold."""
    out, hit, peak, old = [], [], pv0, pv0
    for new in pvs:
        peak = max(peak, new)
        dd = (peak - new) / peak if peak > 0 else 0.0
        r = -10.0 if new <= 0 else (0.0 if old <= 0 else np.log(new / old))
        out.append(r - (penalty * dd if dd > threshold else 0.0))
        hit.append(dd > threshold)
        old = new
    return np.asarray(out), np.asarray(hit)


def test_three_argument_reward_under_jit_and_vmap():
    """A 3-argument reward fn(old_pv, new_pv, state) reading state.peak_pv (the built-in
    drawdown_penalty_reward) works under jit + vmap and equals a NumPy computation of log-return minus
    5 x drawdown beyond 10% from the running peak (float32 env)."""
    env, params = make(FRAME, leverage=3, action_levels=LEVELS, transaction_fee=0.0005, random_start=True,
                       reward_fn=drawdown_penalty_reward)  # fmt: skip
    n, steps = 8, 20
    actions = jnp.asarray(np.random.default_rng(1).integers(0, 5, (steps, n)), jnp.int32)

    @jax.jit
    def run(key):
        ks = jax.random.split(key, n)
        state = jax.vmap(env.reset_state, in_axes=(0, None))(ks, params)
        vstep = jax.vmap(env.step_env, in_axes=(0, 0, 0, None))

        def one(state, xs):
            k, a = xs
            _, state, reward, done, info = vstep(jax.random.split(k, n), state, a, params)
            return state, (reward, info["portfolio_value"], done, state.peak_pv)

        return state, jax.lax.scan(one, state, (jax.random.split(key, steps), actions))[1]

    state0, (rewards, pvs, done, peaks) = jax.tree.map(np.asarray, run(jax.random.PRNGKey(3)))
    penalised = 0
    for i in range(n):
        stop = int(np.argmax(done[:, i])) + 1 if done[:, i].any() else steps  # compare the first episode
        want, hit = _numpy_drawdown_rewards(float(state0.initial_pv[i]), pvs[:stop, i].astype(np.float64))
        np.testing.assert_allclose(rewards[:stop, i], want, rtol=1e-4, atol=1e-4, err_msg=f"lane {i}")
        np.testing.assert_allclose(peaks[:stop, i], np.maximum.accumulate(np.r_[state0.initial_pv[i],
                                   pvs[:stop, i]])[1:], rtol=1e-6)  # fmt: skip
        penalised += int(hit.sum())
    assert penalised > 0, "the scenario never crossed the 10% drawdown: the penalty went untested"


def test_two_argument_custom_reward_is_used():
    """A 2-argument batched reward fn replaces the default."""
    with jax.enable_x64(True):
        env, params = make(minute_frame([100, 102, 104, 103]), action_levels=(0.0, 1.0),
                           reward_fn=lambda old, new: new - old)  # fmt: skip
        reset, rows = run_script(env, params, [1, 1, 1])
    pv = np.r_[reset["pv"], rows["pv"]]
    np.testing.assert_allclose(rows["reward"], np.diff(pv).astype(np.float32), rtol=1e-6)


def _one(a):
    return a


def _four(a, b, c, d):
    return a


def _with_default(old, new, scale=2.0):
    return scale * (new - old)


def _star(*args):
    return args[1] - args[0]


def test_reward_signature_checked_on_make_q31():
    """Q31 FIX: make() validates the reward fn on the host: a callable taking (old_pv, new_pv) or
    (old_pv, new_pv, state) as required positional arguments passes (extra defaulted arguments allowed,
    *args counts as 3); anything else raises ValueError naming the function and its arguments."""
    assert reward_arity(log_return_reward) == 2 and reward_arity(drawdown_penalty_reward) == 3
    assert reward_arity(_with_default) == 2 and reward_arity(_star) == 3
    frame = minute_frame([100, 101, 102])
    cfg = tj.EnvConfig(time_frames="1Min", execute_on="1Min", window_sizes=2, random_start=False)
    for fn, match in ((_one, r"reward_fn '_one' must take \(old_pv, new_pv\).*it takes 1: \['a'\]"),
                      (_four, r"reward_fn '_four' must take .*it takes 4"),
                      (42, r"reward_fn must be callable")):  # fmt: skip
        with pytest.raises(ValueError, match=match):
            tj.make(frame, cfg, reward_fn=fn)
    env, _ = tj.make(frame, cfg, reward_fn=_with_default)
    assert env.reward_fn is _with_default

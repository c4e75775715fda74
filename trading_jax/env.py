"""`TradingEnv`: the pure-JAX counterpart of TorchTrade's `SequentialTradingEnv` (docs/semantics.md §2–§4).

gymnax-style: `reset(key, params)` and `step(key, state, action, params)` act on ONE lane and are
`jax.vmap`-ed for many; `default_params` (a property), `action_space(params)`, `observation_space(params)`,
`name` and `num_actions` complete gymnax's `Environment` interface. `step` returns
`(obs, state, reward, done, info)` (gymnax before 1.0, PureJaxRL); `trading_jax.GymnaxEnv` gives gymnax 1.x's
six-value step. `step` auto-resets; `step_env` does not; `transition` is the lowest level and takes the
slippage multiplier as an input (tests inject the golden `slippage_u` there).

Action indices outside `[0, num_actions - 1]` are clipped into it (-1 -> 0, 100 -> the last action,
docs/semantics.md §3.3).

Shapes: `obs` is `[obs_dim]` float32 with `obs_dim = sum_k window_k * features_k + 6`; under vmap every
leaf gains a leading `[num_envs]` axis.
"""

from __future__ import annotations

import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from trading_jax import accounting as acc
from trading_jax import rebalance, sltp, spaces
from trading_jax.config import EnvConfig
from trading_jax.market import Market, build_market
from trading_jax.money_range import check_money_range
from trading_jax.rewards import log_return_reward, reward_arity
from trading_jax.sltp import bracket_action_map
from trading_jax.timeframes import parse_timeframe
from trading_jax.types import ACCOUNT_FEATURES, ActionKind, BracketSide, EnvParams, EnvState, ParamsLayout
from trading_jax.xla_cpu import compute_once, random_words, uniform_int, unit_float

__all__ = [
    "ACCOUNT_FEATURES",
    "ActionKind",
    "BracketSide",
    "EnvParams",
    "EnvState",
    "ParamsLayout",
    "TradingEnv",
    "bracket_action_map",
    "make",
]

def _select(pred, on_true, on_false):
    return jax.tree.map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)


class TradingEnv:
    """The env's static part: shapes, the config and the reward function. Numbers live in `EnvParams`."""

    def __init__(self, market: Market, config: EnvConfig, reward_fn=None):
        self.market = market
        self.config = config
        self.reward_fn = log_return_reward if reward_fn is None else reward_fn
        self._reward_arity = reward_arity(self.reward_fn)
        self.window_sizes = tuple(market.window_sizes)
        self.feature_sizes = tuple(int(f.shape[1]) for f in market.data.features)
        self.window_keys = market.obs_keys
        self.num_bars = int(market.data.ohlc.shape[0])
        self.action_map = bracket_action_map(config) if config.sltp else None
        self.num_actions = len(self.action_map) if config.sltp else len(config.action_levels)
        market_dim = sum(w * f for w, f in zip(self.window_sizes, self.feature_sizes, strict=True))
        self.observation_shape = (market_dim + len(ACCOUNT_FEATURES),)
        self.layout = ParamsLayout(self.window_sizes, self.feature_sizes, bool(config.sltp))
        ohlc = np.asarray(market.data.ohlc)
        self._price_range = (float(ohlc.min()), float(ohlc.max())) if ohlc.size else (1.0, 1.0)
        if not config.sltp and config.leverage == 1 and any(a < 0 for a in config.action_levels):
            # TorchTrade's scalar env warns here too (its text: "Negative action_levels provided with leverage=1")
            warnings.warn(
                f"Negative action_levels {tuple(a for a in config.action_levels if a < 0)} with leverage=1: "
                "short positions are not possible in spot mode, so negative levels act as 0 (flat). Remove "
                "the negative levels or set leverage > 1 (docs/semantics.md §2.1, §3.3).",
                UserWarning,
                stacklevel=2,
            )

    # ------------------------------------------------------------------ gymnax interface
    @property
    def name(self) -> str:
        return type(self).__name__

    def action_space(self, params: EnvParams | None = None):
        """`Discrete(num_actions)`: gymnax's class when gymnax is installed (see `trading_jax.spaces`)."""
        return spaces.discrete(self.num_actions)

    def observation_space(self, params: EnvParams | None = None):
        """`Box(-inf, inf, observation_shape, float32)`: raw prices and features are unbounded."""
        return spaces.box(-np.inf, np.inf, self.observation_shape, jnp.float32)

    # ------------------------------------------------------------------ params
    @property
    def default_params(self) -> EnvParams:
        """This config's params, in the money dtype of the moment (float64 under `jax_enable_x64`).

        Raises `ValueError` when the prices or the cash leave that dtype's safe range
        (`trading_jax.money_range`).
        """
        cfg, dt = self.config, acc.money_dtype()
        lo, hi = cfg.cash_range
        check_money_range(self._price_range, (lo, hi), cfg.leverage, dt)
        is_range = isinstance(cfg.initial_cash, tuple)
        if cfg.sltp:
            bracket_side, bracket_sl, bracket_tp = sltp.bracket_tables(self.action_map)
        else:
            bracket_side, bracket_sl, bracket_tp = [0], [0.0], [0.0]
        scalar = lambda v: jnp.asarray(v, dt)
        return EnvParams(
            market=self.market.data,
            action_levels=jnp.asarray(cfg.action_levels, dt),
            leverage=scalar(cfg.leverage),
            transaction_fee=scalar(cfg.transaction_fee),
            slippage=scalar(cfg.slippage),
            maintenance_margin_rate=scalar(cfg.maintenance_margin_rate),
            bankrupt_threshold=scalar(cfg.bankrupt_threshold),
            cash=scalar(lo),
            # the integer range is only read when a (lo, hi) range is drawn; a fixed cash may exceed int32
            cash_lo=jnp.asarray(int(lo) if is_range else 0, jnp.int32),
            cash_hi=jnp.asarray(int(hi) if is_range else 0, jnp.int32),
            max_traj_length=jnp.asarray(min(cfg.max_traj_length or 0, 2**31 - 1), jnp.int32),
            bracket_side=jnp.asarray(bracket_side, jnp.int32),
            bracket_sl=jnp.asarray(bracket_sl, dt),
            bracket_tp=jnp.asarray(bracket_tp, dt),
            position_fraction=scalar(cfg.position_fraction),
            quantity_per_trade=scalar(cfg.quantity_per_trade),
            lock_position=jnp.asarray(cfg.lock_position_until_sltp),
            layout=self.layout,
        )

    def check_params(self, params: EnvParams) -> EnvParams:
        """Host-side, at trace time: `params` must have been built for this env's layout (`ParamsLayout`)."""
        if params.layout != self.layout:
            raise ValueError(
                f"params were built for {_describe(params.layout)}, but this env was built for "
                f"{_describe(self.layout)}: use this env's own params (env.default_params, or the pair that "
                "trading_jax.make returns)"
            )
        return params

    # ------------------------------------------------------------------ observation
    def get_obs(self, state: EnvState, params: EnvParams) -> jax.Array:
        """Flat observation `[obs_dim]` float32 at `state.bar` (docs/semantics.md §1.8)."""
        self.check_params(params)
        parts = []
        for k, w in enumerate(self.window_sizes):
            row = params.market.row_index[k][state.bar]
            window = jax.lax.dynamic_slice_in_dim(params.market.features[k], row + 1, w, axis=0)
            parts.append(window.reshape(-1))
        close = params.market.ohlc[state.bar, 3].astype(state.balance.dtype)
        pv = acc.portfolio_value(state.balance, state.position, state.entry, close, params.leverage)
        parts.append(
            acc.account_state(
                state.position, state.entry, pv, state.hold, close, params.leverage,
                params.maintenance_margin_rate,
            )
        )
        return jnp.concatenate(parts)

    def portfolio_value(self, state: EnvState, params: EnvParams) -> jax.Array:
        """Mark-to-market value at the close of `state.bar` (§3.8); the reset cash right after a reset."""
        close = params.market.ohlc[state.bar, 3].astype(state.balance.dtype)
        return acc.portfolio_value(state.balance, state.position, state.entry, close, params.leverage)

    def split_observation(self, obs) -> dict[str, Any]:
        """Split flat observations `[..., obs_dim]` into `{window key: [..., w, F], "account_state": [..., 6]}`."""
        out, offset = {}, 0
        for key, w, f in zip(self.window_keys, self.window_sizes, self.feature_sizes, strict=True):
            out[key] = obs[..., offset : offset + w * f].reshape(*obs.shape[:-1], w, f)
            offset += w * f
        out["account_state"] = obs[..., offset:]
        return out

    # ------------------------------------------------------------------ reset
    def reset_state(self, key: jax.Array, params: EnvParams) -> EnvState:
        """A fresh episode (docs/semantics.md §2.3)."""
        return self._reset_from_bits(random_words(key)[1:], self.check_params(params))

    def _reset_from_bits(self, bits: jax.Array, params: EnvParams) -> EnvState:
        """A fresh episode from two random uint32 words: index arithmetic only, cheap enough for the
        auto-reset, which computes it for every lane on every step. Whether the start and the cash are
        drawn at all is static (the config), so a fixed start or fixed cash costs nothing."""
        dt = acc.money_dtype()
        num_bars = params.market.ohlc.shape[0]
        m = params.max_traj_length
        if self.config.random_start:
            # differs from TorchTrade: a random start always leaves at least one real step (start <= T - 2
            # without a max length) (Q18)
            last_start = jnp.maximum(jnp.where(m > 0, num_bars - m, num_bars - 2), 0)
            start = uniform_int(bits[0], last_start + 1)
        else:
            start = jnp.zeros((), jnp.int32)
        end = jnp.where(m > 0, jnp.minimum(start + m, num_bars), num_bars).astype(jnp.int32)
        if isinstance(self.config.initial_cash, tuple):
            cash = (params.cash_lo + uniform_int(bits[1], params.cash_hi - params.cash_lo + 1)).astype(dt)
        else:
            cash = params.cash
        zero = jnp.zeros((), dt)
        return EnvState(
            bar=start, start=start, end=end, balance=cash, position=zero, entry=zero,
            hold=jnp.zeros((), jnp.int32), prev_action=jnp.full((), -1, jnp.int32), initial_pv=cash,
            peak_pv=cash, stop_loss=zero, take_profit=zero,
        )

    def reset(self, key: jax.Array, params: EnvParams | None = None) -> tuple[jax.Array, EnvState]:
        params = self.default_params if params is None else params
        state = self.reset_state(key, params)
        return self.get_obs(state, params), state

    # ------------------------------------------------------------------ trading phases
    # Each phase's outputs are computed once (`compute_once`); without these boundaries XLA:CPU would
    # re-derive the earlier phases inside every later kernel.
    def _rebalance_phases(self, state: EnvState, action, p, bar, params: EnvParams):
        """Fractional levels (docs/semantics.md §3.3–3.10). Returns `(balance, position, entry, kind)`."""
        once = lambda values: compute_once(values, state.bar)
        q_t, branch = once(rebalance.plan(state, action, p, params))
        bal = once(rebalance.close_first(state, branch, p, params))
        bal, q, e, kind = once(rebalance.resize(state, action, q_t, branch, bal, p, params))
        return once(rebalance.liquidate(bal, q, e, kind, bar, params))

    def _bracket_phases(self, state: EnvState, action, p, bar, params: EnvParams):
        """Bracket orders (docs/semantics.md §4). Returns `(balance, position, entry, stop_loss, take_profit, kind)`."""
        once = lambda values: compute_once(values, state.bar)
        bal = once(sltp.close_first(state, action, p, params))
        bal, size, kind, closes = once(sltp.open_order(state, action, p, bal, params, self.config.trade_mode))
        bal, q, e, sl, tp, kind = once(sltp.place(state, action, p, bal, size, kind, closes, params))
        fill, exit_kind = once(sltp.exit_trigger(q, e, sl, tp, bar, params))
        bal, q, e, kind = once(sltp.book_exit(bal, q, e, kind, fill, exit_kind, params))
        return bal, q, e, sl, tp, kind

    # ------------------------------------------------------------------ step
    def transition(self, state: EnvState, action, slippage_u, params: EnvParams):
        """One step without auto-reset, with the slippage multiplier `slippage_u` given (docs/semantics.md §3.2).

        Returns `(state, reward, terminated, truncated, kind)`. Stepping an exhausted episode returns the
        exhaustion response (§3.11): same bar and account, reward 0, truncated. An action index outside
        `[0, n - 1]` (n: the length of the params' action table) is clipped into it (§3.3).
        """
        self.check_params(params)
        table = params.bracket_side if self.config.sltp else params.action_levels
        action = jnp.clip(jnp.asarray(action, jnp.int32), 0, table.shape[-1] - 1)
        dt = state.balance.dtype
        L, ohlc = params.leverage, params.market.ohlc
        nxt = jnp.minimum(state.bar + 1, ohlc.shape[0] - 1)
        bar = ohlc[nxt].astype(dt)
        close = ohlc[state.bar, 3].astype(dt)
        p = compute_once(close * jnp.asarray(slippage_u).astype(dt), state.bar)

        if self.config.sltp:
            bal, q, e, sl, tp, kind = self._bracket_phases(state, action, p, bar, params)
        else:
            bal, q, e, kind = self._rebalance_phases(state, action, p, bar, params)
            sl, tp = state.stop_loss, state.take_profit
        old_pv = acc.portfolio_value(state.balance, state.position, state.entry, close, L)
        pv = acc.portfolio_value(bal, q, e, bar[3], L)
        direction = jnp.sign(q)
        hold = jnp.where(direction == 0, 0, jnp.where(direction != jnp.sign(state.position), 1, state.hold + 1))
        new = state.replace(
            bar=nxt, balance=bal, position=q, entry=e, hold=hold.astype(jnp.int32),
            prev_action=jnp.asarray(action, jnp.int32), peak_pv=jnp.maximum(state.peak_pv, pv),
            # differs from TorchTrade: brackets are cleared whenever the position is gone (Q26)
            stop_loss=jnp.where(direction == 0, 0.0, sl), take_profit=jnp.where(direction == 0, 0.0, tp),
        )
        if self._reward_arity == 3:
            reward = self.reward_fn(old_pv, pv, new)
        else:
            reward = self.reward_fn(old_pv, pv)
        # differs from TorchTrade: a wiped account (PV <= 0) terminates even with bankrupt_threshold = 0 (Q2)
        terminated = (pv < params.bankrupt_threshold * state.initial_pv) | (pv <= 0)

        was_exhausted = state.exhausted
        new = _select(was_exhausted, state, new)
        reward = jnp.where(was_exhausted, 0.0, reward).astype(jnp.float32)
        terminated = terminated & ~was_exhausted
        truncated = new.exhausted
        kind = jnp.where(was_exhausted, ActionKind.HOLD, kind).astype(jnp.int32)
        return new, reward, terminated, truncated, kind

    def slippage_multiplier(self, word: jax.Array, params: EnvParams) -> jax.Array:
        """Float32 `u ~ U(1 - s, 1 + s)` from one random uint32 word (exactly 1.0 when s = 0)."""
        s = params.slippage.astype(jnp.float32)
        return (1.0 - s) + (2.0 * s) * unit_float(word)

    def describe(self, state: EnvState, params: EnvParams) -> dict[str, jax.Array]:
        """The account fields of `info` for a state (also used for the reset row of a history)."""
        return {
            "portfolio_value": self.portfolio_value(state, params),
            "balance": state.balance,
            "position_size": state.position,
            "entry_price": state.entry,
            "price": params.market.ohlc[state.bar, 3],
            "bar": state.bar,
            "step": state.step_count,
        }

    def _step_state(self, words, state, action, params):
        new, reward, terminated, truncated, kind = self.transition(
            state, action, self.slippage_multiplier(words[0], params), params
        )
        info = self.describe(new, params)
        # the auto-reset's select and the info fields all read `done`: one more phase boundary
        done = compute_once(terminated | truncated, new.bar)
        info.update(terminated=terminated, truncated=truncated, action_kind=kind)
        return new, reward, done, info

    def step_env(self, key, state, action, params=None):
        """One step without auto-reset: `(obs, state, reward, done, info)`."""
        params = self.default_params if params is None else params
        new, reward, done, info = self._step_state(random_words(key), state, action, params)
        obs = self.get_obs(new, params)
        info["final_observation"] = obs
        return obs, new, reward, done, info

    def step(self, key, state, action, params=None):
        """One step with auto-reset: on `done` the returned obs/state start a new episode, while
        `info["final_observation"]` (and the account fields of `info`) describe the episode's last bar.

        The same key gives the same transition as `step_env`; its other two words draw the reset.
        """
        params = self.default_params if params is None else params
        words = random_words(key)
        new, reward, done, info = self._step_state(words, state, action, params)
        state = _select(done, self._reset_from_bits(words[1:], params), new)
        obs = self.get_obs(state, params)
        # On steps that are not done this is `obs` itself, bit for bit (XLA may compile two separate
        # observations of the same state slightly differently); it costs nothing when unused.
        info["final_observation"] = jnp.where(done, self.get_obs(new, params), obs)
        return obs, state, reward, done, info


def _describe(layout: ParamsLayout) -> str:
    return f"window_sizes={layout.window_sizes}, feature_sizes={layout.feature_sizes}, sltp={layout.sltp}"


def _check_market_matches(market: Market, config: EnvConfig) -> None:
    got = (tuple(tf.key for tf in market.time_frames), tuple(market.window_sizes), market.execute_on.key)
    want = (
        tuple(parse_timeframe(tf).key for tf in config.time_frames),
        tuple(config.window_sizes),
        parse_timeframe(config.execute_on).key,
    )
    if got != want:
        raise ValueError(
            f"the Market was built for (time_frames, window_sizes, execute_on) = {got}, but the config "
            f"asks for {want}: rebuild the market with build_market(..., {want})"
        )


def make(data, config: EnvConfig | None = None, *, features=None, reward_fn=None, allow_missing=False):
    """Build `(env, params)` from a `Market`, or from anything `load_ohlcv` accepts.

    `features` and `allow_missing` (only when `data` is not already a `Market`) go to `build_market`:
    None (raw OHLCV + aux, the reference default), one callable, or one entry per timeframe
    (docs/semantics.md §1.4).
    `reward_fn(old_pv, new_pv[, state])`: batched, see `trading_jax.rewards`.
    """
    config = EnvConfig() if config is None else config
    if not isinstance(config, EnvConfig):
        raise ValueError(f"config must be an EnvConfig, got {type(config).__name__}")
    if isinstance(data, Market):
        if features is not None:
            raise ValueError("features: pass them to build_market; this Market's features are already built")
        _check_market_matches(data, config)
        market = data
    else:
        market = build_market(
            data, config.time_frames, config.window_sizes, config.execute_on, features,
            allow_missing=allow_missing,
        )
    num_bars = int(market.data.ohlc.shape[0])
    if config.random_start and (num_bars < 2 or config.max_traj_length == 1):
        raise ValueError(
            f"random_start needs episodes of at least one step: the timeline has {num_bars} bars and "
            f"max_traj_length={config.max_traj_length}; use more data or max_traj_length >= 2"
        )
    if not config.random_start and (num_bars < 2 or config.max_traj_length == 1):
        warnings.warn(
            "every episode has zero steps (one bar to read): each step returns the exhaustion response",
            stacklevel=2,
        )
    env = TradingEnv(market, config, reward_fn)
    return env, env.default_params

"""`TradingEnv`: the pure-JAX counterpart of TorchTrade's `SequentialTradingEnv` (spec §2–§4).

gymnax-style: `reset(key, params)` and `step(key, state, action, params)` act on ONE lane and are
`jax.vmap`-ed for many. `step` auto-resets; `step_env` does not; `transition` is the lowest level and
takes the slippage multiplier as an input (tests inject the golden `slippage_u` there).

Shapes: `obs` is `[obs_dim]` float32 with `obs_dim = sum_k window_k * features_k + 6`; under vmap every
leaf gains a leading `[num_envs]` axis.
"""

from __future__ import annotations

import enum
import warnings
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from trading_jax import accounting as acc
from trading_jax.config import EnvConfig
from trading_jax.market import Market, MarketData, build_market
from trading_jax.rewards import log_return_reward, reward_arity
from trading_jax.timeframes import parse_timeframe

ACCOUNT_FEATURES = (
    "exposure",
    "position_direction",
    "unrealized_pnl_pct",
    "holding_time",
    "leverage",
    "distance_to_liquidation",
)


class ActionKind(enum.IntEnum):
    """Integer codes of the trade labels (spec §3.14, §4.2); `info["action_kind"]` holds them."""

    HOLD = 0
    BUY = 1
    SELL = 2
    LONG = 3
    SHORT = 4
    FLAT = 5
    CLOSE_PARTIAL = 6
    LIQUIDATION = 7
    CLOSE = 8
    SLTP_SL = 9
    SLTP_TP = 10

    @property
    def label(self) -> str:
        return self.name.lower()


class BracketSide(enum.IntEnum):
    """What a bracket-mode action does (spec §4.1)."""

    HOLD = 0
    CLOSE = 1
    LONG = 2
    SHORT = 3


@struct.dataclass
class EnvState:
    """One lane's state: every leaf is a scalar array (`[num_envs]` under vmap).

    Only what cannot be derived is stored: the portfolio value is `portfolio_value(state, params)`, the
    hold counter's direction is `sign(position)`, and the episode is exhausted when `bar + 1 >= end`.
    """

    bar: jax.Array  # int32, current execution bar i (the agent has seen bar i)
    start: jax.Array  # int32, first bar of the episode
    end: jax.Array  # int32, one past the episode's last bar
    balance: jax.Array  # money, free cash
    position: jax.Array  # money, signed size in base units (> 0 long, < 0 short)
    entry: jax.Array  # money, entry price (0 when flat)
    hold: jax.Array  # int32, holding-time counter (§3.9)
    prev_action: jax.Array  # int32, last action index (-1: none yet) for the same-action shortcut
    initial_pv: jax.Array  # money, this episode's starting cash
    peak_pv: jax.Array  # money, highest portfolio value of this episode (for drawdown rewards)
    stop_loss: jax.Array  # money, bracket stop price (0: none)
    take_profit: jax.Array  # money, bracket target price (0: none)

    @property
    def exhausted(self) -> jax.Array:
        """The episode's last bar has been read: the next step returns the exhaustion response (§3.11)."""
        return self.bar + 1 >= self.end

    @property
    def step_count(self) -> jax.Array:
        """Bars advanced in this episode (exhaustion responses do not advance)."""
        return self.bar - self.start


@struct.dataclass
class EnvParams:
    """Everything numeric: market arrays and settings. A pytree, so it can be vmapped (e.g. over fees)."""

    market: MarketData
    action_levels: jax.Array  # [num_actions] money; unused in bracket mode
    leverage: jax.Array
    transaction_fee: jax.Array
    slippage: jax.Array
    maintenance_margin_rate: jax.Array
    bankrupt_threshold: jax.Array
    cash: jax.Array  # money, the fixed initial cash (the low end of a range)
    cash_lo: jax.Array  # int32
    cash_hi: jax.Array  # int32; a range is drawn iff cash_hi > cash_lo
    max_traj_length: jax.Array  # int32, 0 means none
    # bracket mode (spec §4); [num_actions] tables built from the action map
    bracket_side: jax.Array  # int32 BracketSide
    bracket_sl: jax.Array  # money, stop offset as stored in the action map (long < 0, short > 0)
    bracket_tp: jax.Array  # money, target offset (long > 0, short < 0)
    position_fraction: jax.Array
    quantity_per_trade: jax.Array
    lock_position: jax.Array  # bool


def bracket_action_map(config: EnvConfig) -> list[tuple[str, float, float]]:
    """The bracket action map of spec §4.1: `[(side, sl, tp), ...]` in index order."""
    actions = []
    if config.include_hold_action:
        actions.append(("hold", 0.0, 0.0))
    if config.include_close_action:
        actions.append(("close", 0.0, 0.0))
    pairs = [(sl, tp) for sl in config.stoploss_levels for tp in config.takeprofit_levels]
    actions += [("long", sl, tp) for sl, tp in pairs]
    if config.is_futures:
        actions += [("short", -sl, -tp) for sl, tp in pairs]
    return actions


def _mix32(x: jax.Array) -> jax.Array:
    """MurmurHash3's 32-bit finaliser: a bijection that spreads every input bit over the output."""
    x = (x ^ (x >> 16)) * jnp.uint32(0x85EBCA6B)
    x = (x ^ (x >> 13)) * jnp.uint32(0xC2B2AE35)
    return x ^ (x >> 16)


def _random_words(key: jax.Array) -> jax.Array:
    """All the randomness of one step, `[slippage, start, cash]` uint32 words, hashed from the key's bits.

    A key passed to `step` is already a threefry output (from `jax.random.split`), so a cheap hash of its
    bits is as good as a fresh threefry call, and far cheaper on CPU, where `jax.random.bits` lowers to a
    rolled loop that costs more than the rest of the step. Same key, same words.
    """
    data = jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key
    data = data.reshape(-1).astype(jnp.uint32)
    seed = _mix32(data[0] ^ _mix32(data[1] ^ jnp.uint32(0x9E3779B9)))
    return jnp.stack([seed, _mix32(seed ^ jnp.uint32(0x243F6A88)), _mix32(seed ^ jnp.uint32(0x85A308D3))])


def _unit_float(word: jax.Array) -> jax.Array:
    """Float32 in [0, 1) from the top 23 bits of a uint32 word (as `jax.random.uniform` builds it)."""
    mantissa = (word >> jnp.uint32(9)) | jnp.uint32(0x3F800000)
    return jax.lax.bitcast_convert_type(mantissa, jnp.float32) - 1.0


def _uniform_int(word: jax.Array, n: jax.Array) -> jax.Array:
    """Integer in [0, n) from a uint32 word; the modulo bias, below n / 2**32, is negligible here."""
    return (word % jnp.asarray(n).astype(jnp.uint32)).astype(jnp.int32)


# Rebalance branches (spec §3.4), computed once per step.
_HOLD, _CLOSE, _OPEN, _SWITCH, _INCREASE, _DECREASE = range(6)


def _materialize(values, state: EnvState):
    """`values`, computed once and stored.

    XLA:CPU fuses cheap elementwise producers into every consumer, so without this each state field's
    kernel re-derives the whole trade logic (a dozen copies per step; `optimization_barrier` is dropped
    before fusion on CPU). A division is "expensive" to XLA and is never duplicated, so dividing by a
    runtime 1.0 (exact in IEEE arithmetic) makes XLA compute each value once. The 1.0 comes from `state`
    (a bar index is never negative, which XLA cannot know). Integer and boolean leaves pass through float32,
    so they must be small codes (|x| < 2**24), as they are here.
    """
    one = jnp.where(state.bar >= 0, 1.0, 2.0)

    def _div(x):
        if jnp.issubdtype(x.dtype, jnp.floating):
            return x / one.astype(x.dtype)
        return (x.astype(jnp.float32) / one.astype(jnp.float32)).astype(x.dtype)

    return jax.tree.map(_div, values)


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
        self.window_keys = tuple(
            f"market_data_{tf.key}_{w}" for tf, w in zip(market.time_frames, self.window_sizes, strict=True)
        )
        self.num_bars = int(market.data.ohlc.shape[0])
        if config.sltp:
            self.action_map = bracket_action_map(config)
        else:
            self.action_map = None
        self.num_actions = len(self.action_map) if config.sltp else len(config.action_levels)
        market_dim = sum(w * f for w, f in zip(self.window_sizes, self.feature_sizes, strict=True))
        self.observation_shape = (market_dim + len(ACCOUNT_FEATURES),)

    # ------------------------------------------------------------------ params
    def default_params(self) -> EnvParams:
        cfg, dt = self.config, acc.money_dtype()
        lo, hi = cfg.cash_range
        is_range = isinstance(cfg.initial_cash, tuple)
        if cfg.sltp:
            sides = {"hold": BracketSide.HOLD, "close": BracketSide.CLOSE, "long": BracketSide.LONG,
                     "short": BracketSide.SHORT}
            bracket_side = [int(sides[s]) for s, _, _ in self.action_map]
            bracket_sl = [sl for _, sl, _ in self.action_map]
            bracket_tp = [tp for _, _, tp in self.action_map]
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
        )

    # ------------------------------------------------------------------ observation
    def get_obs(self, state: EnvState, params: EnvParams) -> jax.Array:
        """Flat observation `[obs_dim]` float32 at `state.bar` (spec §1.8)."""
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
        """A fresh episode (spec §2.3)."""
        return self._reset_from_bits(_random_words(key)[1:], params)

    def _reset_from_bits(self, bits: jax.Array, params: EnvParams) -> EnvState:
        """A fresh episode from two random uint32 words: index arithmetic only, cheap enough for the
        auto-reset, which computes it for every lane on every step. Whether the start and the cash are
        drawn at all is static (the config), so a fixed start or fixed cash costs nothing."""
        dt = acc.money_dtype()
        num_bars = params.market.ohlc.shape[0]
        m = params.max_traj_length
        if self.config.random_start:
            # Q18 fix: a random start always leaves at least one real step (start <= T - 2 without a max length).
            last_start = jnp.maximum(jnp.where(m > 0, num_bars - m, num_bars - 2), 0)
            start = _uniform_int(bits[0], last_start + 1)
        else:
            start = jnp.zeros((), jnp.int32)
        end = jnp.where(m > 0, jnp.minimum(start + m, num_bars), num_bars).astype(jnp.int32)
        if isinstance(self.config.initial_cash, tuple):
            cash = (params.cash_lo + _uniform_int(bits[1], params.cash_hi - params.cash_lo + 1)).astype(dt)
        else:
            cash = params.cash
        zero = jnp.zeros((), dt)
        return EnvState(
            bar=start, start=start, end=end, balance=cash, position=zero, entry=zero,
            hold=jnp.zeros((), jnp.int32), prev_action=jnp.full((), -1, jnp.int32), initial_pv=cash,
            peak_pv=cash, stop_loss=zero, take_profit=zero,
        )

    def reset(self, key: jax.Array, params: EnvParams) -> tuple[jax.Array, EnvState]:
        state = self.reset_state(key, params)
        return self.get_obs(state, params), state

    # ------------------------------------------------------------------ trading
    def _rebalance(self, state: EnvState, action, p, params: EnvParams):
        """Fractional-level rebalance (spec §3.3–3.7). Returns `(balance, position, entry, kind)`."""
        L, f = params.leverage, params.transaction_fee
        bal, q, e = state.balance, state.position, state.entry
        levels = params.action_levels
        allows_short = jnp.any(levels < 0) & (L > 1)
        level = levels[action]
        level = jnp.where(allows_short, level, jnp.maximum(level, 0.0))

        q_t, _ = acc.target_position(acc.portfolio_value(bal, q, e, p, L), level, p, L, f)
        tol = jnp.where(q_t == 0, 0.0, jnp.maximum(0.02 * jnp.abs(q_t), 1.0 / p))
        acts = ~((action == state.prev_action) & (q != 0)) & ~((q != 0) & (jnp.abs(q_t - q) < tol))
        flat, to_flat = q == 0, q_t == 0
        switch = ~flat & ~to_flat & (jnp.sign(q) != jnp.sign(q_t))
        grows = jnp.abs(q_t) > jnp.abs(q)
        branch = jnp.where(grows, _INCREASE, _DECREASE)
        branch = jnp.where(flat, _OPEN, jnp.where(to_flat, _CLOSE, jnp.where(switch, _SWITCH, branch)))
        branch = jnp.where(~acts | (flat & to_flat), _HOLD, branch)
        q_t, branch = _materialize((q_t, branch), state)
        do_close = (branch == _CLOSE) | (branch == _SWITCH)
        do_open = (branch == _OPEN) | (branch == _SWITCH)
        do_increase, do_decrease = branch == _INCREASE, branch == _DECREASE
        to_flat = branch == _CLOSE

        bal1 = _materialize(jnp.where(do_close, acc.book_close(bal, q, e, p, L, f), bal), state)
        # An open is sized from the flat portfolio (= the balance), before or after a close (§3.4).
        q_open, n_open = acc.target_position(bal1, level, p, L, f)
        bal_open, open_ok = acc.book_open(bal1, n_open, L, f)
        opened = do_open & open_ok
        bal_inc, e_inc, inc_ok = acc.book_increase(bal, q, e, q_t, p, L, f)
        increased = do_increase & inc_ok
        bal_dec = acc.book_decrease(bal, q, e, q_t, p, L, f)

        new_bal = jnp.where(opened, bal_open, bal1)
        new_bal = jnp.where(increased, bal_inc, jnp.where(do_decrease, bal_dec, new_bal))
        new_q = jnp.where(do_close, 0.0, q)
        new_q = jnp.where(opened, q_open, jnp.where(increased | do_decrease, q_t, new_q))
        new_e = jnp.where(do_close, 0.0, e)
        new_e = jnp.where(opened, p, jnp.where(increased, e_inc, new_e))

        long_short = lambda size: jnp.where(size > 0, ActionKind.LONG, ActionKind.SHORT)
        kind = jnp.full((), ActionKind.HOLD, jnp.int32)
        kind = jnp.where(do_close & to_flat, jnp.where(allows_short, ActionKind.FLAT, ActionKind.SELL), kind)
        kind = jnp.where(opened, jnp.where(allows_short, long_short(q_open), ActionKind.BUY), kind)
        kind = jnp.where(increased, jnp.where(allows_short, long_short(q_t - q), ActionKind.BUY), kind)
        kind = jnp.where(
            do_decrease, jnp.where(allows_short, ActionKind.CLOSE_PARTIAL, ActionKind.SELL), kind
        )
        return new_bal, new_q, new_e, kind

    def _liquidate(self, bal, q, e, kind, bar, params: EnvParams):
        """Liquidation on the next bar's wick (spec §3.10)."""
        L, f = params.leverage, params.transaction_fee
        o, h, lo = bar[0], bar[1], bar[2]
        liq = acc.liquidation_price(q, e, L, params.maintenance_margin_rate)
        hit = acc.liquidation_breached(q, liq, lo, h, L)
        fill = acc.liquidation_fill(q, e, liq, o, L, f)
        bal = jnp.where(hit, acc.book_close(bal, q, e, fill, L, f), bal)
        return bal, jnp.where(hit, 0.0, q), jnp.where(hit, 0.0, e), jnp.where(hit, ActionKind.LIQUIDATION, kind)

    def _bracket_trade(self, state: EnvState, action, p, params: EnvParams):
        """Bracket-order action (spec §4.2). Returns `(balance, position, entry, sl, tp, kind)`."""
        L, f = params.leverage, params.transaction_fee
        bal, q, e = state.balance, state.position, state.entry
        side = params.bracket_side[action]
        side = jnp.where(params.lock_position & (q != 0), BracketSide.HOLD, side)
        want_long, want_short = side == BracketSide.LONG, side == BracketSide.SHORT
        duplicate = (want_long & (q > 0)) | (want_short & (q < 0))
        do_trade = (want_long | want_short) & ~duplicate
        agent_close = (side == BracketSide.CLOSE) & (q != 0)
        closes = agent_close | (do_trade & (q != 0))  # a flip books its close first, unconditionally
        bal1 = _materialize(jnp.where(closes, acc.book_close(bal, q, e, p, L, f), bal), state)

        mode = self.config.trade_mode
        if mode == "fractional":
            frac = params.position_fraction
            level = jnp.where((L == 1) | want_long, frac, -frac)
            size, notional = acc.target_position(bal1, level, p, L, f)
        else:
            if mode == "notional":
                notional = params.quantity_per_trade
                magnitude = notional / p
            else:
                magnitude = params.quantity_per_trade
                notional = magnitude * p
            size = jnp.where(want_long, magnitude, -magnitude)
        bal_open, ok = acc.book_open(bal1, notional, L, f)
        opened = do_trade & ok

        kind = jnp.where(agent_close, ActionKind.CLOSE, ActionKind.HOLD)
        kind = jnp.where(opened, jnp.where(want_long, ActionKind.LONG, ActionKind.SHORT), kind)
        new_bal = jnp.where(opened, bal_open, bal1)
        new_bal, size, kind, closes = _materialize((new_bal, size, kind, closes), state)
        opened = (kind == ActionKind.LONG) | (kind == ActionKind.SHORT)
        new_q = jnp.where(opened, size, jnp.where(closes, 0.0, q))
        new_e = jnp.where(opened, p, jnp.where(closes, 0.0, e))
        sl = jnp.where(opened, p * (1 + params.bracket_sl[action]), state.stop_loss)
        tp = jnp.where(opened, p * (1 + params.bracket_tp[action]), state.take_profit)
        return new_bal, new_q, new_e, sl, tp, kind

    def _bracket_exits(self, state: EnvState, bal, q, e, sl, tp, kind, bar, params: EnvParams):
        """Stops, targets and liquidation on the next bar, in the priority of spec §4.3."""
        L, f = params.leverage, params.transaction_fee
        o, h, lo, c = bar[0], bar[1], bar[2], bar[3]
        long = q > 0
        bar_min = jnp.minimum(jnp.minimum(o, lo), c)
        bar_max = jnp.maximum(jnp.maximum(o, h), c)
        armed = (q != 0) & ((sl != 0) | (tp != 0))
        sl_hit = armed & (sl > 0) & jnp.where(long, bar_min <= sl, bar_max >= sl)
        tp_hit = armed & ~sl_hit & (tp > 0) & jnp.where(long, bar_max >= tp, bar_min <= tp)
        liq = acc.liquidation_price(q, e, L, params.maintenance_margin_rate)
        stop_first = sl_hit & jnp.where(long, (sl > liq) & (o > liq), (sl < liq) & (o < liq))
        liquidated = acc.liquidation_breached(q, liq, lo, h, L) & ~stop_first
        stop_fill = jnp.where(long, jnp.minimum(o, sl), jnp.maximum(o, sl))
        fill = jnp.where(
            liquidated, acc.liquidation_fill(q, e, liq, o, L, f), jnp.where(sl_hit, stop_fill, tp)
        )
        exit_kind = jnp.where(tp_hit, ActionKind.SLTP_TP, -1)
        exit_kind = jnp.where(sl_hit, ActionKind.SLTP_SL, exit_kind)
        exit_kind = jnp.where(liquidated, ActionKind.LIQUIDATION, exit_kind)
        fill, exit_kind = _materialize((fill, exit_kind), state)
        exits = exit_kind >= 0
        bal = jnp.where(exits, acc.book_close(bal, q, e, fill, L, f), bal)
        kind = jnp.where(exits, exit_kind, kind)
        return bal, jnp.where(exits, 0.0, q), jnp.where(exits, 0.0, e), kind

    # ------------------------------------------------------------------ step
    def transition(self, state: EnvState, action, slippage_u, params: EnvParams):
        """One step without auto-reset, with the slippage multiplier `slippage_u` given (spec §3.2).

        Returns `(state, reward, terminated, truncated, kind)`. Stepping an exhausted episode returns the
        exhaustion response (§3.11): same bar and account, reward 0, truncated.
        """
        dt = state.balance.dtype
        L, ohlc = params.leverage, params.market.ohlc
        nxt = jnp.minimum(state.bar + 1, ohlc.shape[0] - 1)
        bar = ohlc[nxt].astype(dt)
        close = ohlc[state.bar, 3].astype(dt)
        p = _materialize(close * jnp.asarray(slippage_u).astype(dt), state)

        if self.config.sltp:
            bal, q, e, sl, tp, kind = _materialize(self._bracket_trade(state, action, p, params), state)
            bal, q, e, kind = _materialize(self._bracket_exits(state, bal, q, e, sl, tp, kind, bar, params), state)
        else:
            bal, q, e, kind = _materialize(self._rebalance(state, action, p, params), state)
            bal, q, e, kind = _materialize(self._liquidate(bal, q, e, kind, bar, params), state)
            sl, tp = state.stop_loss, state.take_profit
        old_pv = acc.portfolio_value(state.balance, state.position, state.entry, close, L)
        pv = acc.portfolio_value(bal, q, e, bar[3], L)
        direction = jnp.sign(q)
        hold = jnp.where(direction == 0, 0, jnp.where(direction != jnp.sign(state.position), 1, state.hold + 1))
        new = state.replace(
            bar=nxt, balance=bal, position=q, entry=e, hold=hold.astype(jnp.int32),
            prev_action=jnp.asarray(action, jnp.int32), peak_pv=jnp.maximum(state.peak_pv, pv),
            # Q26 fix: brackets are cleared whenever the position is gone.
            stop_loss=jnp.where(direction == 0, 0.0, sl), take_profit=jnp.where(direction == 0, 0.0, tp),
        )
        if self._reward_arity == 3:
            reward = self.reward_fn(old_pv, pv, new)
        else:
            reward = self.reward_fn(old_pv, pv)
        # Q2 fix: a wiped account (PV <= 0) terminates even with bankrupt_threshold = 0.
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
        return (1.0 - s) + (2.0 * s) * _unit_float(word)

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
        done = _materialize(terminated | truncated, new)
        info.update(terminated=terminated, truncated=truncated, action_kind=kind)
        return new, reward, done, info

    def step_env(self, key, state, action, params):
        """One step without auto-reset: `(obs, state, reward, done, info)`."""
        new, reward, done, info = self._step_state(_random_words(key), state, action, params)
        obs = self.get_obs(new, params)
        info["final_observation"] = obs
        return obs, new, reward, done, info

    def step(self, key, state, action, params):
        """One step with auto-reset: on `done` the returned obs/state start a new episode, while
        `info["final_observation"]` (and the account fields of `info`) describe the episode's last bar.

        The same key gives the same transition as `step_env`; its other two words draw the reset.
        """
        words = _random_words(key)
        new, reward, done, info = self._step_state(words, state, action, params)
        state = _select(done, self._reset_from_bits(words[1:], params), new)
        obs = self.get_obs(state, params)
        # On steps that are not done this is `obs` itself, bit for bit (XLA may compile two separate
        # observations of the same state slightly differently); it costs nothing when unused.
        info["final_observation"] = jnp.where(done, self.get_obs(new, params), obs)
        return obs, state, reward, done, info


def make(data, config: EnvConfig | None = None, *, features=None, reward_fn=None, allow_missing=False):
    """Build `(env, params)` from a `Market`, or from anything `load_ohlcv` accepts.

    `features` and `allow_missing` (only when `data` is not already a `Market`) go to `build_market`:
    None (raw OHLCV + aux, the reference default), one callable, or one entry per timeframe (spec §1.4).
    `reward_fn(old_pv, new_pv[, state])`: batched, see `trading_jax.rewards`.
    """
    config = EnvConfig() if config is None else config
    if not isinstance(config, EnvConfig):
        raise ValueError(f"config must be an EnvConfig, got {type(config).__name__}")
    if isinstance(data, Market):
        if features is not None:
            raise ValueError("features: pass them to build_market; this Market's features are already built")
        market = data
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
    return env, env.default_params()

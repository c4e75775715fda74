"""Bracket orders (stop-loss / take-profit): the action map, bracket trades and exits (docs/semantics.md §4).

A bracket step is five phases, which `TradingEnv.transition` runs in this order: `close_first` (an agent
close, or the close a flip books first), `open_order` (size and book the new position), `place` (the new
position and its bracket prices), then on the next bar `exit_trigger` (which exit fires, at what fill) and
`book_exit`. Each phase recomputes the little it needs from its inputs; XLA merges the repeats.
"""

from __future__ import annotations

import jax.numpy as jnp

from trading_jax import accounting as acc
from trading_jax.config import EnvConfig
from trading_jax.types import ActionKind, BracketSide, EnvParams, EnvState

_SIDES = {"hold": BracketSide.HOLD, "close": BracketSide.CLOSE, "long": BracketSide.LONG, "short": BracketSide.SHORT}


def bracket_action_map(config: EnvConfig) -> list[tuple[str, float, float]]:
    """The bracket action map of docs/semantics.md §4.1: `[(side, sl, tp), ...]` in index order."""
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


def bracket_tables(action_map: list[tuple[str, float, float]]) -> tuple[list[int], list[float], list[float]]:
    """The action map as the `[num_actions]` columns of `EnvParams`: side codes, stop and target offsets."""
    return (
        [int(_SIDES[side]) for side, _, _ in action_map],
        [sl for _, sl, _ in action_map],
        [tp for _, _, tp in action_map],
    )


def _order(state: EnvState, action, params: EnvParams):
    """What the action asks for (§4.2): `(want_long, do_trade, agent_close, closes)`.

    A locked position ignores every action; repeating the open side is a no-op; a flip books its close
    first, unconditionally.
    """
    q = state.position
    side = params.bracket_side[action]
    side = jnp.where(params.lock_position & (q != 0), BracketSide.HOLD, side)
    want_long, want_short = side == BracketSide.LONG, side == BracketSide.SHORT
    duplicate = (want_long & (q > 0)) | (want_short & (q < 0))
    do_trade = (want_long | want_short) & ~duplicate
    agent_close = (side == BracketSide.CLOSE) & (q != 0)
    closes = agent_close | (do_trade & (q != 0))
    return want_long, do_trade, agent_close, closes


def close_first(state: EnvState, action, p, params: EnvParams):
    """The balance after an agent close or the close of a flip, at fill price `p` (§4.2)."""
    L, f = params.leverage, params.transaction_fee
    *_, closes = _order(state, action, params)
    closed = acc.book_close(state.balance, state.position, state.entry, p, L, f)
    return jnp.where(closes, closed, state.balance)


def open_order(state: EnvState, action, p, bal_after_close, params: EnvParams, trade_mode: str):
    """Size and book the order's open (§4.2). Returns `(balance, size, kind, closes)`.

    `trade_mode` (static): `"fractional"` sizes a fraction of the balance; `"notional"` a fixed quote
    amount; `"quantity"` a fixed base amount.
    """
    L = params.leverage
    want_long, do_trade, agent_close, closes = _order(state, action, params)
    if trade_mode == "fractional":
        frac = params.position_fraction
        level = jnp.where((L == 1) | want_long, frac, -frac)
        size, notional = acc.target_position(bal_after_close, level, p, L, params.transaction_fee)
    else:
        if trade_mode == "notional":
            notional = params.quantity_per_trade
            magnitude = notional / p
        else:
            magnitude = params.quantity_per_trade
            notional = magnitude * p
        size = jnp.where(want_long, magnitude, -magnitude)
    bal_open, ok = acc.book_open(bal_after_close, notional, L, params.transaction_fee)
    opened = do_trade & ok

    kind = jnp.where(agent_close, ActionKind.CLOSE, ActionKind.HOLD)
    kind = jnp.where(opened, jnp.where(want_long, ActionKind.LONG, ActionKind.SHORT), kind)
    return jnp.where(opened, bal_open, bal_after_close), size, kind, closes


def place(state: EnvState, action, p, bal, size, kind, closes, params: EnvParams):
    """The account after the order, with the new position's bracket prices (§4.2).

    Returns `(balance, position, entry, stop_loss, take_profit, kind)`.
    """
    opened = (kind == ActionKind.LONG) | (kind == ActionKind.SHORT)
    q = jnp.where(opened, size, jnp.where(closes, 0.0, state.position))
    e = jnp.where(opened, p, jnp.where(closes, 0.0, state.entry))
    sl = jnp.where(opened, p * (1 + params.bracket_sl[action]), state.stop_loss)
    tp = jnp.where(opened, p * (1 + params.bracket_tp[action]), state.take_profit)
    return bal, q, e, sl, tp, kind


def exit_trigger(q, e, sl, tp, bar, params: EnvParams):
    """Which exit fires on the next bar, in the priority of §4.3, and its fill price.

    Returns `(fill, exit_kind)`; `exit_kind` is -1 when nothing fires.
    """
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
    fill = jnp.where(liquidated, acc.liquidation_fill(q, e, liq, o, L, f), jnp.where(sl_hit, stop_fill, tp))
    exit_kind = jnp.where(tp_hit, ActionKind.SLTP_TP, -1)
    exit_kind = jnp.where(sl_hit, ActionKind.SLTP_SL, exit_kind)
    exit_kind = jnp.where(liquidated, ActionKind.LIQUIDATION, exit_kind)
    return fill, exit_kind


def book_exit(bal, q, e, kind, fill, exit_kind, params: EnvParams):
    """Close the whole position at `fill` when an exit fired (§4.3). Returns `(balance, position, entry, kind)`."""
    exits = exit_kind >= 0
    bal = jnp.where(exits, acc.book_close(bal, q, e, fill, params.leverage, params.transaction_fee), bal)
    kind = jnp.where(exits, exit_kind, kind)
    return bal, jnp.where(exits, 0.0, q), jnp.where(exits, 0.0, e), kind

"""The rebalance decision tree of fractional action levels, and liquidation (docs/semantics.md §3.3–3.10).

One step's trade is three phases: `plan` (target size and branch of the tree), `close_first` (the close
that a close or a direction switch books before anything else) and `resize` (open, increase or decrease).
`TradingEnv.transition` runs them in that order, then `liquidate` on the next bar. Each phase recomputes
the little it needs from its inputs; XLA merges the repeats.
"""

from __future__ import annotations

import jax.numpy as jnp

from trading_jax import accounting as acc
from trading_jax.types import ActionKind, EnvParams, EnvState

# A position within this distance of its target is held (§3.4): 2 % of the target size, or the size worth
# $1 at the fill price, whichever is larger.
REBALANCE_RELATIVE_TOLERANCE = 0.02
REBALANCE_MIN_NOTIONAL = 1.0

# Branches of the decision tree (§3.4).
HOLD, CLOSE, OPEN, SWITCH, INCREASE, DECREASE = range(6)


def _level(action, params: EnvParams):
    """The action's level, and whether shorts are allowed (a negative level and L > 1; else a level is
    clipped at 0, §3.3)."""
    levels = params.action_levels
    allows_short = jnp.any(levels < 0) & (params.leverage > 1)
    level = levels[action]
    return jnp.where(allows_short, level, jnp.maximum(level, 0.0)), allows_short


def plan(state: EnvState, action, p, params: EnvParams):
    """Target size `q_t` at fill price `p` and the branch of the decision tree (§3.3–3.4)."""
    L, f = params.leverage, params.transaction_fee
    bal, q, e = state.balance, state.position, state.entry
    level, _ = _level(action, params)
    q_t, _ = acc.target_position(acc.portfolio_value(bal, q, e, p, L), level, p, L, f)
    tol = jnp.where(
        q_t == 0, 0.0, jnp.maximum(REBALANCE_RELATIVE_TOLERANCE * jnp.abs(q_t), REBALANCE_MIN_NOTIONAL / p)
    )
    acts = ~((action == state.prev_action) & (q != 0)) & ~((q != 0) & (jnp.abs(q_t - q) < tol))
    flat, to_flat = q == 0, q_t == 0
    switch = ~flat & ~to_flat & (jnp.sign(q) != jnp.sign(q_t))
    grows = jnp.abs(q_t) > jnp.abs(q)
    branch = jnp.where(grows, INCREASE, DECREASE)
    branch = jnp.where(flat, OPEN, jnp.where(to_flat, CLOSE, jnp.where(switch, SWITCH, branch)))
    branch = jnp.where(~acts | (flat & to_flat), HOLD, branch)
    return q_t, branch


def _closes(branch):
    return (branch == CLOSE) | (branch == SWITCH)


def close_first(state: EnvState, branch, p, params: EnvParams):
    """The balance after the close that a close or a switch books first (§3.4, §3.7)."""
    L, f = params.leverage, params.transaction_fee
    closed = acc.book_close(state.balance, state.position, state.entry, p, L, f)
    return jnp.where(_closes(branch), closed, state.balance)


def resize(state: EnvState, action, q_t, branch, bal_after_close, p, params: EnvParams):
    """Open, increase or decrease towards `q_t` (§3.5–3.7). Returns `(balance, position, entry, kind)`."""
    L, f = params.leverage, params.transaction_fee
    bal, q, e = state.balance, state.position, state.entry
    level, allows_short = _level(action, params)
    do_close = _closes(branch)
    do_open = (branch == OPEN) | (branch == SWITCH)
    do_increase, do_decrease = branch == INCREASE, branch == DECREASE
    to_flat = branch == CLOSE

    # An open is sized from the flat portfolio (= the balance), before or after a close (§3.4).
    q_open, n_open = acc.target_position(bal_after_close, level, p, L, f)
    bal_open, open_ok = acc.book_open(bal_after_close, n_open, L, f)
    opened = do_open & open_ok
    bal_inc, e_inc, inc_ok = acc.book_increase(bal, q, e, q_t, p, L, f)
    increased = do_increase & inc_ok
    bal_dec = acc.book_decrease(bal, q, e, q_t, p, L, f)

    new_bal = jnp.where(opened, bal_open, bal_after_close)
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
    kind = jnp.where(do_decrease, jnp.where(allows_short, ActionKind.CLOSE_PARTIAL, ActionKind.SELL), kind)
    return new_bal, new_q, new_e, kind


def liquidate(bal, q, e, kind, bar, params: EnvParams):
    """Liquidation on the next bar's wick (§3.10). Returns `(balance, position, entry, kind)`."""
    L, f = params.leverage, params.transaction_fee
    o, h, lo = bar[0], bar[1], bar[2]
    liq = acc.liquidation_price(q, e, L, params.maintenance_margin_rate)
    hit = acc.liquidation_breached(q, liq, lo, h, L)
    fill = acc.liquidation_fill(q, e, liq, o, L, f)
    bal = jnp.where(hit, acc.book_close(bal, q, e, fill, L, f), bal)
    return bal, jnp.where(hit, 0.0, q), jnp.where(hit, 0.0, e), jnp.where(hit, ActionKind.LIQUIDATION, kind)

"""Pure money maths of one lane (docs/semantics.md §3.3–3.10), each formula once, in the evaluation order of §10.1.

Every function works on scalars (one lane) and vectorises with `jax.vmap`. Arguments: `bal` free cash,
`q` signed position size (base units), `e` entry price, `x`/`p` a fill or mark price, `L` leverage,
`f` fee rate, `mmr` maintenance margin rate. Parenthesisation is load-bearing: it is what makes float64
results equal TorchTrade's bit for bit.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

# An all-in open overshoots `bal` by an ulp or so; the reference lets it through with a 1e-9 relative slack
# (§3.5). In float32, 1 + 1e-9 rounds to 1, so the float32 path uses 8 ulps instead.
OPEN_SLACK = {jnp.dtype(jnp.float64): 1e-9, jnp.dtype(jnp.float32): 8 * float(jnp.finfo(jnp.float32).eps)}


def money_dtype():
    """The one money-dtype switch.

    float64 (with `jax_enable_x64`) reproduces TorchTrade bit for bit. float32 is the default because it
    is several times faster, but it can flip liquidation, bankruptcy and tolerance decisions that sit
    exactly on a boundary, and drifts ~1e-6 relative from the reference.
    """
    return jnp.float64 if jax.config.jax_enable_x64 else jnp.float32


def unrealized_pnl(q, e, x):
    """`q * (x - e)`: equal, bit for bit, to `(x - e)*q` for a long and `(e - x)*|q|` for a short."""
    return q * (x - e)


def portfolio_value(bal, q, e, x, L):
    """Mark-to-market value at price `x` (§3.8): spot `bal + |q| x`; futures free + locked margin + uPnL."""
    spot = bal + jnp.abs(q) * x
    futures = (bal + (jnp.abs(q * e) / L)) + unrealized_pnl(q, e, x)
    return jnp.where(L == 1, spot, futures)


def target_position(pv, level, p, L, f):
    """Target size and notional for action level `level` at price `p` (§3.3, the scalar form).

    Returns `(q_t, N_t)`; both 0 for a zero level. Margin `N_t/L` plus fee `N_t f` equals `pv |level|`.
    """
    notional = ((pv * jnp.abs(level)) / (1 + (L * f))) * L
    q_t = (notional / p) * jnp.sign(level)
    zero = level == 0
    return jnp.where(zero, 0.0, q_t), jnp.where(zero, 0.0, notional)


def open_cost(notional, L, f):
    """Margin plus fee of opening `notional` (§3.5): `(N/L) + |N| f`."""
    return (notional / L) + (jnp.abs(notional) * f)


def affordable(cost, bal):
    return cost <= bal * (1 + OPEN_SLACK[jnp.dtype(bal.dtype)])


def pay(bal, cost):
    """Book an open or increase: `max(bal - cost, 0)`."""
    return jnp.maximum(bal - cost, 0.0)


def book_open(bal, notional, L, f):
    """Balance after opening `notional` from flat (§3.5), and whether it was affordable."""
    cost = open_cost(notional, L, f)
    return pay(bal, cost), affordable(cost, bal)


def book_increase(bal, q, e, q_t, p, L, f):
    """Increase `q` to `q_t` at `p` (§3.6). Returns `(bal, e, ok)`: quantity-weighted entry."""
    delta = q_t - q
    cost = open_cost(jnp.abs(delta * p), L, f)
    entry = ((e * jnp.abs(q)) + (p * jnp.abs(delta))) / (jnp.abs(q) + jnp.abs(delta))
    return pay(bal, cost), entry, affordable(cost, bal)


def book_close(bal, q, e, x, L, f):
    """Balance after closing `q` (the whole position, or the part a decrease closes) at `x` (§3.7).

    The margin locked at the entry price comes back. Also books liquidations and bracket exits.
    """
    pnl = unrealized_pnl(q, e, x)
    fee = jnp.abs(q * x) * f
    back = jnp.abs(q * e) / L
    return jnp.maximum(bal + ((pnl - fee) + back), 0.0)


def book_decrease(bal, q, e, q_t, p, L, f):
    """Balance after decreasing `q` to `q_t` at `p` (§3.7): the closed part `q (1 - |q_t|/|q|)` is booked."""
    return book_close(bal, q * (1 - (jnp.abs(q_t) / jnp.abs(q))), e, p, L, f)


def liquidation_price(q, e, L, mmr):
    """Liquidation price (§3.10); 0 when flat or at L == 1."""
    m = 1.0 / L
    long = e * ((1 - m) + mmr)
    short = e * ((1 + m) - mmr)
    return jnp.where((q == 0) | (L == 1), 0.0, jnp.where(q > 0, long, short))


def bankruptcy_price(q, e, L, f):
    m = 1.0 / L
    return jnp.where(q > 0, e * ((1 - m) / (1 - f)), e * ((1 + m) / (1 + f)))


def liquidation_breached(q, liq, low, high, L):
    """Bar `[low, high]` touches the liquidation price of an open futures position (inclusive)."""
    hit = jnp.where(q > 0, low <= liq, high >= liq)
    return (L > 1) & (q != 0) & hit


def liquidation_fill(q, e, liq, bar_open, L, f):
    """Fill price of a liquidation: the open if it gapped through, never worse than bankruptcy."""
    bk = bankruptcy_price(q, e, L, f)
    long = jnp.maximum(jnp.minimum(bar_open, liq), bk)
    short = jnp.minimum(jnp.maximum(bar_open, liq), bk)
    return jnp.where(q > 0, long, short)


def account_state(q, e, pv, hold, price, L, mmr):
    """The 6 account features at `price` (§1.7.1, §10.1), computed in money dtype, returned float32.

    `[exposure, direction, unrealized_pnl_pct, holding_time, leverage, distance_to_liquidation]`.
    """
    safe_pv = jnp.where(pv > 0, pv, 1.0)
    exposure = jnp.where(pv > 0, jnp.abs(q * price) / safe_pv, 0.0)
    direction = jnp.sign(q)
    notional_at_entry = jnp.abs(q * e)
    upnl_pct = jnp.where(
        (q != 0) & (e != 0),
        unrealized_pnl(q, e, price) / jnp.where(notional_at_entry > 0, notional_at_entry, 1.0),
        0.0,
    )
    liq = liquidation_price(q, e, L, mmr)
    safe_price = jnp.where(price != 0, price, 1.0)
    dist = jnp.where(q > 0, (price - liq) / safe_price, (liq - price) / safe_price)
    dist = jnp.where((L == 1) | (q == 0) | (price == 0), 1.0, jnp.maximum(0.0, dist))
    feats = (exposure, direction, upnl_pct, hold.astype(pv.dtype), jnp.broadcast_to(L, pv.shape), dist)
    return jnp.stack([jnp.asarray(x, pv.dtype) for x in feats]).astype(jnp.float32)

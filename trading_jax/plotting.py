"""`render_history`: the reference's three-panel history plot (docs/semantics.md §6.5).

Differs from TorchTrade: agent closes ("flat") and partial closes are marked as closes (docs/semantics.md
Q21); the x axis shows the bars' dates when the history carries them (`lane_history(..., times=...)` or
`times=`), and the money axes name the quote currency only when it is given (no hard-coded "USD").
"""

from __future__ import annotations

import numpy as np

from trading_jax.metrics import buy_and_hold
from trading_jax.types import ActionKind

_EXITS = (
    ActionKind.CLOSE, ActionKind.LIQUIDATION, ActionKind.SLTP_SL, ActionKind.SLTP_TP,
    ActionKind.FLAT, ActionKind.CLOSE_PARTIAL,  # differs from TorchTrade: it never marks these two (Q21)
)


def _x_axis(history, times, n: int):
    """The x values and label: the bar times (tz-naive UTC) when known, else the step index."""
    times = history.get("time") if times is None else times
    if times is None:
        return np.arange(n), "Step"
    times = np.asarray(times, "datetime64[ns]")
    if times.shape != (n,):
        raise ValueError(f"times must hold one timestamp per history row ({n}), got shape {times.shape}")
    return times, "Time (UTC)"


def render_history(
    history,
    leverage: float = 1.0,
    allows_short: bool | None = None,
    title: str | None = None,
    *,
    times=None,
    quote_currency: str | None = None,
):
    """Draw one lane's episode: price with trade markers, portfolio value vs buy-and-hold, exposure.

    `history`: dict of 1-D arrays `price, portfolio_value, position_size, action_kind` with the reset row
    first (e.g. `trading_jax.lane_history(traj, lane)`), and optionally `time`. `times`: one timestamp per
    row (default `history["time"]`; without either the x axis is the step index). `title` heads the figure;
    `quote_currency` (e.g. "USDT") labels the price and value axes. Returns a matplotlib `Figure`.
    """
    from matplotlib import dates
    from matplotlib.figure import Figure  # no pyplot: no global figure registry, works headless

    price = np.asarray(history["price"], np.float64)
    value = np.asarray(history["portfolio_value"], np.float64)
    position = np.asarray(history["position_size"], np.float64)
    kind = np.asarray(history["action_kind"], np.int64)
    if allows_short is None:
        allows_short = bool(np.any(position < 0)) or bool(np.any(kind == ActionKind.SHORT))
    x, x_label = _x_axis(history, times, len(price))
    prev_side = np.sign(np.concatenate([[0.0], position[:-1]]))
    unit = f" ({quote_currency})" if quote_currency else ""

    fig = Figure(figsize=(12, 10))
    ax_price, ax_value, ax_exp = fig.subplots(3, 1, sharex=True, gridspec_kw={"height_ratios": [3, 2, 1]})
    if title:
        fig.suptitle(title)
    ax_price.plot(x, price, color="tab:blue", lw=1, label="Price")
    exits = np.isin(kind, _EXITS)
    if allows_short:
        marks = [
            (kind == ActionKind.LONG, "^", "green", "Long Open"),
            (kind == ActionKind.SHORT, "v", "red", "Short Open"),
            (exits & (prev_side > 0), "v", "orange", "Long Close"),
            (exits & (prev_side < 0), "^", "cyan", "Short Close"),
        ]
        ax_price.set_title("Price History with Long/Short Actions")
    else:
        marks = [
            (np.isin(kind, (ActionKind.BUY, ActionKind.LONG)), "^", "green", "Buy"),
            (np.isin(kind, (ActionKind.SELL, ActionKind.SHORT)), "v", "red", "Sell"),
            (exits, "v", "orange", "Position Close"),
        ]
        ax_price.set_title("Price History with Buy/Sell Actions")
    # Which exit it was: bracket exits and liquidations also get a marker of their own.
    marks += [
        (kind == ActionKind.SLTP_SL, "x", "black", "Stop-Loss Exit"),
        (kind == ActionKind.SLTP_TP, "*", "gold", "Take-Profit Exit"),
        (kind == ActionKind.LIQUIDATION, "X", "purple", "Liquidation"),
    ]
    for mask, marker, color, label in marks:
        if mask.any():
            ax_price.scatter(x[mask], price[mask], marker=marker, color=color, s=60, label=label, zorder=3)
    ax_price.set_ylabel(f"Price{unit}")
    ax_price.legend(loc="best")
    ax_price.grid(alpha=0.3)

    ax_value.plot(x, value, color="green", lw=1.2, label="Portfolio Value")
    if len(price):
        bh = buy_and_hold(price, value[0], leverage)
        ax_value.plot(x, bh, color="purple", ls="--", lw=1.2, label=f"Buy and Hold ({leverage:g}x)")
    ax_value.set_title("Portfolio Value vs Buy and Hold")
    ax_value.set_ylabel(f"Portfolio Value{unit}")
    ax_value.legend(loc="best")
    ax_value.grid(alpha=0.3)

    exposure = np.where(value > 0, position * price / np.where(value > 0, value, 1.0) * 100, 0.0)
    ax_exp.plot(x, exposure, color="black", lw=0.8)
    ax_exp.fill_between(x, exposure, 0, where=exposure > 0, color="green", alpha=0.3, label="Long")
    if allows_short:
        ax_exp.fill_between(x, exposure, 0, where=exposure < 0, color="red", alpha=0.3, label="Short")
    ax_exp.axhline(0, color="grey", lw=0.8)
    ax_exp.set_title("Exposure History")
    ax_exp.set_ylabel("Exposure (%)")
    ax_exp.set_xlabel(x_label)
    ax_exp.grid(alpha=0.3)
    if x.dtype.kind == "M":
        locator = dates.AutoDateLocator()
        ax_exp.xaxis.set_major_locator(locator)
        ax_exp.xaxis.set_major_formatter(dates.ConciseDateFormatter(locator))
    fig.tight_layout()
    return fig

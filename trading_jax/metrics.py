"""Episode metrics of one lane's history (host side, NumPy)."""

from __future__ import annotations

import numpy as np

MINUTES_PER_YEAR = 365 * 24 * 60  # crypto trades around the clock; pass periods_per_year for other markets


def periods_per_year(bar_minutes: float) -> float:
    return MINUTES_PER_YEAR / bar_minutes


def buy_and_hold(prices, initial_value: float, leverage: float = 1.0) -> np.ndarray:
    """The reference's baseline (Q22): `PV0 * (1 + L * (p_t / p_0 - 1))`, no fees, 0 once it hits 0."""
    prices = np.asarray(prices, np.float64)
    value = initial_value * (1 + leverage * (prices / prices[0] - 1))
    wiped = np.maximum.accumulate(value <= 0)
    return np.where(wiped, 0.0, value)


def max_drawdown(values) -> float:
    values = np.asarray(values, np.float64)
    peak = np.maximum.accumulate(values)
    dd = np.where(peak > 0, (peak - values) / np.where(peak > 0, peak, 1.0), 0.0)
    return float(dd.max()) if len(dd) else 0.0


def _round_trip_pnls(values, positions) -> list[float]:
    """PnL of each round trip: PV when a position ends (closed or flipped) minus PV before it opened."""
    pnls, entry_value = [], None
    for t in range(1, len(positions)):
        before, after = np.sign(positions[t - 1]), np.sign(positions[t])
        if before != 0 and after != before and entry_value is not None:
            pnls.append(values[t] - entry_value)
            entry_value = None
        if after != 0 and after != before:
            entry_value = values[t - 1]
    return pnls


def episode_metrics(history, periods_per_year: float = periods_per_year(60)) -> dict[str, float]:
    """Total return, annualised Sharpe and Sortino, max drawdown, trades, win rate, time in market.

    `history`: a dict with `portfolio_value` and `position_size` arrays (one lane, reset row first), as
    returned by `trading_jax.lane_history`. Returns are simple per-step returns; a wiped account ends
    the series.
    """
    values = np.asarray(history["portfolio_value"], np.float64)
    positions = np.asarray(history["position_size"], np.float64)
    prev, cur = values[:-1], values[1:]
    returns = np.where(prev > 0, cur / np.where(prev > 0, prev, 1.0) - 1, 0.0)
    mean, std = (returns.mean(), returns.std(ddof=1)) if len(returns) > 1 else (0.0, 0.0)
    downside = np.sqrt(np.mean(np.minimum(returns, 0.0) ** 2)) if len(returns) else 0.0
    scale = np.sqrt(periods_per_year)
    pnls = _round_trip_pnls(values, positions)
    trades = int(np.sum((np.sign(positions[1:]) != np.sign(positions[:-1])) & (positions[1:] != 0)))
    return {
        "total_return": float(values[-1] / values[0] - 1) if values[0] > 0 else 0.0,
        "log_return": float(np.log(values[-1] / values[0])) if values[-1] > 0 and values[0] > 0 else -np.inf,
        "final_value": float(values[-1]),
        "sharpe": float(mean / std * scale) if std > 0 else 0.0,
        "sortino": float(mean / downside * scale) if downside > 0 else 0.0,
        "max_drawdown": max_drawdown(values),
        "num_trades": trades,
        "win_rate": float(np.mean(np.asarray(pnls) > 0)) if pnls else 0.0,
        "time_in_market": float(np.mean(positions[1:] != 0)) if len(positions) > 1 else 0.0,
        "num_steps": int(len(values) - 1),
    }

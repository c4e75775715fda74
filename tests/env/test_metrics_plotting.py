"""episode_metrics and render_history on hand-made histories with known numbers (docs/semantics.md §6.5, §7 item 44,
Q21, Q22). Host-side NumPy/matplotlib only, no JAX compile."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PathCollection
from matplotlib.dates import ConciseDateFormatter
from matplotlib.figure import Figure

import trading_jax as tj
from trading_jax.env import ActionKind as K
from trading_jax.metrics import buy_and_hold, max_drawdown

VALUES = [100.0, 110.0, 121.0, 108.9, 108.9, 130.68, 90.0, 90.0]
POSITIONS = [0.0, 1.0, 1.0, 1.0, 0.0, 2.0, -1.0, 0.0]


def test_episode_metrics_known_numbers():
    """Returns 10%, 10%, -10%, 0, 20%, -31.13%, 0: total return -10%, max drawdown 40.68 / 130.68 from the
    peak, three position entries (a flip counts), three round trips of which one wins (+8.9, -18.9 on the
    flip, -40.68), five of seven steps in the market; Sharpe and Sortino annualised with sqrt(periods)."""
    m = tj.episode_metrics({"portfolio_value": VALUES, "position_size": POSITIONS}, periods_per_year=252)
    r = np.array([0.1, 0.1, -0.1, 0.0, 0.2, 90 / 130.68 - 1, 0.0])
    assert m["num_steps"] == 7 and m["final_value"] == 90.0
    assert m["total_return"] == pytest.approx(-0.1)
    assert m["log_return"] == pytest.approx(math.log(0.9))
    assert m["max_drawdown"] == pytest.approx(40.68 / 130.68)
    assert m["num_trades"] == 3
    assert m["win_rate"] == pytest.approx(1 / 3)
    assert m["time_in_market"] == pytest.approx(5 / 7)
    assert m["sharpe"] == pytest.approx(r.mean() / r.std(ddof=1) * math.sqrt(252))
    assert m["sortino"] == pytest.approx(r.mean() / math.sqrt(np.mean(np.minimum(r, 0) ** 2)) * math.sqrt(252))


def test_episode_metrics_edge_cases():
    """A flat, constant episode has zero everything; a wiped account has log return -inf and a 100%
    drawdown; a single-row history (reset only) has no steps."""
    m = tj.episode_metrics({"portfolio_value": [50.0] * 4, "position_size": [0.0] * 4})
    assert m["total_return"] == 0 and m["sharpe"] == 0 and m["sortino"] == 0 and m["max_drawdown"] == 0
    assert m["num_trades"] == 0 and m["win_rate"] == 0 and m["time_in_market"] == 0
    m = tj.episode_metrics({"portfolio_value": [100.0, 60.0, 0.0], "position_size": [0.0, 5.0, 0.0]})
    assert m["log_return"] == -np.inf and m["total_return"] == -1.0 and m["max_drawdown"] == 1.0
    assert m["num_trades"] == 1 and m["win_rate"] == 0.0
    m = tj.episode_metrics({"portfolio_value": [100.0], "position_size": [0.0]})
    assert m["num_steps"] == 0 and m["total_return"] == 0 and m["time_in_market"] == 0
    assert max_drawdown([]) == 0.0


def test_buy_and_hold_baseline_q22():
    """Q22 (MATCH): buy and hold is PV0 (1 + L (p / p0 - 1)), no fees, and stays 0 once it hits 0."""
    np.testing.assert_allclose(buy_and_hold([100, 110, 90], 1000, 1.0), [1000, 1100, 900])
    np.testing.assert_allclose(buy_and_hold([100, 110, 90], 1000, 3.0), [1000, 1300, 700])
    np.testing.assert_allclose(buy_and_hold([100, 60, 40, 80], 1000, 2.0), [1000, 200, 0, 0])


def history(kinds, positions, prices=None):
    n = len(kinds)
    prices = list(np.linspace(100, 110, n)) if prices is None else prices
    return {"price": np.asarray(prices, np.float32), "portfolio_value": np.linspace(1000, 1050, n),
            "position_size": np.asarray(positions, np.float64), "action_kind": np.asarray(kinds, np.int32)}  # fmt: skip


def markers(fig):
    """{label: sorted x positions} of the scatter markers on the price panel."""
    ax = fig.axes[0]
    return {c.get_label(): sorted(c.get_offsets()[:, 0].tolist()) for c in ax.collections
            if isinstance(c, PathCollection)}  # fmt: skip


def test_render_history_futures_marks_flat_and_partial_closes_q21():
    """Spec §6.5 / Q21 FIX: a Figure with three panels (price with markers, PV vs buy and hold, exposure);
    agent closes (FLAT) and partial closes (CLOSE_PARTIAL) are marked as closes on the side that was held,
    like liquidations and bracket exits."""
    kinds = [K.HOLD, K.LONG, K.HOLD, K.CLOSE_PARTIAL, K.FLAT, K.SHORT, K.FLAT, K.SHORT, K.LIQUIDATION]
    pos = [0, 2, 2, 1, 0, -1, 0, -1, 0]
    fig = tj.render_history(history(kinds, pos), leverage=3)
    assert isinstance(fig, Figure) and len(fig.axes) == 3
    assert markers(fig) == {"Long Open": [1], "Short Open": [5, 7], "Long Close": [3, 4], "Short Close": [6, 8],
                            "Liquidation": [8]}
    labels = [t.get_text() for t in fig.axes[1].get_legend().get_texts()]
    assert labels == ["Portfolio Value", "Buy and Hold (3x)"]
    assert "Long/Short" in fig.axes[0].get_title()


def test_render_history_spot_and_edge_cases():
    """Spec §7 item 44: spot histories get Buy/Sell markers; a single-row history, an empty history and
    unknown kind codes render without error."""
    fig = tj.render_history(history([K.HOLD, K.BUY, K.BUY, K.SELL, K.SELL], [0, 1, 2, 1, 0]))
    assert markers(fig) == {"Buy": [1, 2], "Sell": [3, 4]} and "Buy/Sell" in fig.axes[0].get_title()
    assert len(tj.render_history(history([K.HOLD], [0])).axes) == 3
    assert len(tj.render_history(history([], [], prices=[])).axes) == 3
    fig = tj.render_history(history([K.HOLD, 99, 42], [0, 0, 0]))
    assert markers(fig) == {}


def test_render_history_marks_bracket_exits():
    """Issue 7: stop-loss and take-profit exits are closes on the side held, each with its own marker too."""
    kinds = [K.HOLD, K.LONG, K.SLTP_TP, K.SHORT, K.SLTP_SL, K.LONG, K.CLOSE]
    pos = [0, 1, 0, -1, 0, 1, 0]
    got = markers(tj.render_history(history(kinds, pos), leverage=2, allows_short=True))
    assert got == {"Long Open": [1, 5], "Short Open": [3], "Long Close": [2, 6], "Short Close": [4],
                   "Stop-Loss Exit": [4], "Take-Profit Exit": [2]}


def test_render_a_rollout_lane():
    """render_history accepts `lane_history` output straight from a rollout trajectory (NumPy arrays)."""
    n = 6
    traj = {"price": np.linspace(100, 105, n)[:, None], "portfolio_value": np.linspace(1000, 990, n)[:, None],
            "position_size": np.array([0, 1, 1, -1, -1, 0.0])[:, None],
            "action_kind": np.array([K.HOLD, K.LONG, K.HOLD, K.SHORT, K.HOLD, K.FLAT])[:, None],
            "done": np.array([0, 0, 0, 0, 0, 1], bool)[:, None], "reward": np.zeros((n, 1))}  # fmt: skip
    hist = tj.lane_history(traj, 0)
    fig = tj.render_history(hist, leverage=2)
    assert markers(fig)["Short Close"] == [5]
    m = tj.episode_metrics(hist)
    assert m["num_steps"] == 5 and m["num_trades"] == 2


def test_render_history_dates_title_and_currency():
    """With the bars' times (from `lane_history(..., times=)`) the x axis is a date axis; `title` heads the
    figure; the money axes name the quote currency only when it is given (no hard-coded USD)."""
    n = 5
    times = pd.date_range("2024-05-29 00:00", periods=8, freq="1h")  # an env's exec_times
    traj = {"price": np.linspace(100, 104, n)[:, None], "portfolio_value": np.full((n, 1), 1000.0),
            "position_size": np.zeros((n, 1)), "action_kind": np.zeros((n, 1), np.int32),
            "done": np.array([0, 0, 0, 0, 1], bool)[:, None], "bar": np.arange(3, 3 + n)[:, None]}  # fmt: skip
    hist = tj.lane_history(traj, 0, times=times)
    np.testing.assert_array_equal(hist["time"], times[3:8].to_numpy())
    fig = tj.render_history(hist, title="Test split, 1280 frames", quote_currency="USDT")
    ax_price, ax_value, ax_exp = fig.axes
    assert fig._suptitle.get_text() == "Test split, 1280 frames"
    assert (ax_price.get_ylabel(), ax_value.get_ylabel()) == ("Price (USDT)", "Portfolio Value (USDT)")
    assert ax_exp.get_xlabel() == "Time (UTC)" and isinstance(ax_exp.xaxis.get_major_formatter(), ConciseDateFormatter)
    assert ax_price.lines[0].get_xdata()[0] == np.datetime64("2024-05-29T03:00")
    plain = tj.render_history(tj.lane_history(traj, 0))
    assert (plain.axes[0].get_ylabel(), plain.axes[2].get_xlabel()) == ("Price", "Step") and plain._suptitle is None
    with pytest.raises(ValueError, match=r"times must hold one timestamp per history row \(5\), got shape \(8,\)"):
        tj.render_history(hist, times=times)

"""Bundled sample data.

``btcusdt_1m_sample()``: 254,880 one-minute BTC/USDT bars from Binance spot, 2024-01-01 00:00 to
2024-06-25 23:59 UTC (bar open times; 177 whole days, no gaps, no zero-volume bars). Columns: timestamp
(ISO 8601, UTC), open/high/low/close in USDT, volume in BTC, as the exact decimal text of Binance's own
daily spot-kline archives (no rounding, no resampling).

Origin and terms: Binance public market data, covered by Binance's Terms of Use; no open-data licence
comes with it. Check that your use is acceptable before redistributing the file outside this project.
"""

from __future__ import annotations

import functools
from importlib import resources

import pandas as pd

from trading_jax.market import load_ohlcv

__all__ = ["btcusdt_1m_sample", "BTCUSDT_1M_FILE"]

BTCUSDT_1M_FILE = "btcusdt_binance_spot_1m_20240101_20240625.csv.gz"


@functools.lru_cache(maxsize=1)
def _btcusdt_1m() -> pd.DataFrame:
    with resources.as_file(resources.files(__name__) / BTCUSDT_1M_FILE) as path:
        return load_ohlcv(path)


def btcusdt_1m_sample() -> pd.DataFrame:
    """The bundled BTC/USDT 1-minute sample as a validated frame (see :func:`~trading_jax.market.load_ohlcv`).

    Returns:
        ``[254880, 5]`` DataFrame (open, high, low, close in USDT, volume in BTC; float64), indexed by
        tz-naive UTC bar open times named ``timestamp``. A fresh copy each call (the parsed file is cached).
    """
    return _btcusdt_1m().copy()

"""The money dtype's safe range: prices and cash that keep every number of a step finite (docs/semantics.md §10).

A step forms position sizes `cash * L / p`, position values `size * price` and `1 / p` (the $1 tolerance,
§3.4). With `hi = finfo(money).max / 1e8` (3.4e30 for float32, 1.8e300 for float64; the factor leaves room
for the sums, fees and ratios formed around them) and `lo = 1 / hi`, the data and the config must satisfy

    lo <= every price <= hi,   lo <= initial cash <= hi,
    cash_hi * L * (p_max / p_min) <= hi   the largest position value (bought at the lowest, marked at the highest)
    cash_hi * L / p_min <= hi             the largest position size
    cash_lo / p_max >= lo                 the smallest all-in position size

checked on the host when the params are built (`TradingEnv.default_params`), against the money dtype of
that moment. Outside it float32 money overflows to inf or underflows to 0 and the rewards become NaN.
"""

from __future__ import annotations

import numpy as np

HEADROOM = 1e8


def safe_range(dtype) -> tuple[float, float]:
    """`(lo, hi)`: the magnitudes a money value of `dtype` may take (module docstring)."""
    hi = float(np.finfo(dtype).max) / HEADROOM
    return 1.0 / hi, hi


def check_money_range(prices: tuple[float, float], cash: tuple[float, float], leverage: float, dtype) -> None:
    """Raise a `ValueError` naming the first quantity outside the safe range of `dtype` money, and the fix.

    `prices`: the lowest and highest price of the execution bars; `cash`: the initial cash range (lo, hi).
    """
    lo, hi = safe_range(dtype)
    (p_min, p_max), (c_min, c_max) = prices, cash
    value, size, small = c_max * leverage * (p_max / p_min), c_max * leverage / p_min, c_min / p_max
    checks = (
        (p_min >= lo, f"the lowest price {p_min:.3g}"),
        (p_max <= hi, f"the highest price {p_max:.3g}"),
        (c_min >= lo, f"initial_cash {c_min:.3g}"),
        (c_max <= hi, f"initial_cash {c_max:.3g}"),
        (value <= hi, f"the largest position value (initial_cash x leverage x highest / lowest price) {value:.3g}"),
        (size <= hi, f"the largest position size (initial_cash x leverage / lowest price) {size:.3g}"),
        (small >= lo, f"the smallest position size (initial_cash / highest price) {small:.3g}"),
    )
    for ok, what in checks:
        if not ok:
            name = np.dtype(dtype).name
            fix = "rescale the prices or the cash (e.g. quote them in another unit)"
            if np.dtype(dtype) == np.float32:
                fix = f'use float64 money: jax.config.update("jax_enable_x64", True) before building the env, or {fix}'
            raise ValueError(
                f"{what} is outside the safe range [{lo:.2g}, {hi:.2g}] of {name} money: the step would overflow "
                f"or lose every digit (docs/semantics.md §10). Fix: {fix}."
            )

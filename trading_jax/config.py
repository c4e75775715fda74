"""`EnvConfig`: every setting of the reference env (docs/semantics.md §2.1, §1.2, §4), frozen and validated on
the host, with strict types: a window is an int, a flag a bool, a level a real number; nothing is coerced."""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping, Sequence

import numpy as np

from trading_jax.timeframes import normalize_window_sizes

TRADE_MODES = ("fractional", "notional", "quantity")
FLAGS = (
    "random_start", "include_base_features", "sltp", "include_hold_action", "include_close_action",
    "lock_position_until_sltp",
)


def _items(value) -> tuple:
    if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, np.ndarray)):
        return (value,)
    return tuple(value)


def _as_numbers(value, field: str) -> tuple[float, ...]:
    items = _items(value)
    bad = [v for v in items if not _is_number(v)]
    if bad:
        raise ValueError(
            f"{field}: cannot read {value!r} as a list of numbers: {bad[0]!r} is not a real number "
            "(strings and booleans are not accepted)"
        )
    return tuple(float(v) for v in items)


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _check_range(field: str, value, lo: float, hi: float, *, lo_open=False, hi_open=False, hint=""):
    if not _is_number(value) or not math.isfinite(value):
        raise ValueError(f"{field} must be a finite number, got {value!r}")
    ok_lo = value > lo if lo_open else value >= lo
    ok_hi = value < hi if hi_open else value <= hi
    if not (ok_lo and ok_hi):
        left, right = "(" if lo_open else "[", ")" if hi_open else "]"
        raise ValueError(f"{field} must be in {left}{lo}, {hi}{right}, got {value!r}{hint}")


@dataclasses.dataclass(frozen=True)
class EnvConfig:
    """Settings of one trading env. Hashable, so it can be a static argument of `jax.jit`.

    Defaults are the reference's (docs/semantics.md §2.1). Sequences are normalised to tuples. Randomness does not
    come from a `seed` field: every draw takes an explicit `jax.random` key.
    """

    time_frames: tuple[str, ...] | str = ("1Hour",)
    window_sizes: tuple[int, ...] | int = 10
    execute_on: str = "1Hour"
    initial_cash: float | tuple[int, int] = 10000
    random_start: bool = True
    max_traj_length: int | None = None
    bankrupt_threshold: float = 0.1
    action_levels: tuple[float, ...] = (-1.0, 0.0, 1.0)
    leverage: float = 1
    transaction_fee: float = 0.0
    slippage: float = 0.0
    maintenance_margin_rate: float = 0.004
    margin_mode: str = "isolated"
    include_base_features: bool = False
    # Bracket orders (docs/semantics.md §4). With sltp=True the action space is built from the levels below and
    # action_levels plays no part in trading.
    sltp: bool = False
    stoploss_levels: tuple[float, ...] = (-0.025, -0.05, -0.1)
    takeprofit_levels: tuple[float, ...] = (0.05, 0.1, 0.2)
    include_hold_action: bool = True
    include_close_action: bool = False
    lock_position_until_sltp: bool = False
    trade_mode: str = "fractional"
    position_fraction: float = 1.0
    quantity_per_trade: float = 0.001

    def __post_init__(self):
        set_ = lambda name, value: object.__setattr__(self, name, value)
        set_("time_frames", tuple(str(tf) for tf in _items(self.time_frames)))
        if not self.time_frames:
            raise ValueError("time_frames is empty: give at least one timeframe, e.g. ('1Hour',)")
        windows = _items(self.window_sizes)
        if len(windows) == 1:
            windows = windows * len(self.time_frames)
        set_("window_sizes", normalize_window_sizes(windows, self.time_frames))  # ints >= 1: 2.7, True raise
        for name in FLAGS:
            value = getattr(self, name)
            if not isinstance(value, (bool, np.bool_)):
                raise ValueError(f"{name} must be True or False, got {value!r}")
            set_(name, bool(value))
        set_("action_levels", _as_numbers(self.action_levels, "action_levels"))
        set_("stoploss_levels", _as_numbers(self.stoploss_levels, "stoploss_levels"))
        set_("takeprofit_levels", _as_numbers(self.takeprofit_levels, "takeprofit_levels"))
        if isinstance(self.initial_cash, Sequence) and not isinstance(self.initial_cash, str):
            set_("initial_cash", tuple(self.initial_cash))
        if isinstance(self.trade_mode, str):
            set_("trade_mode", self.trade_mode.lower())
        if isinstance(self.margin_mode, str):
            set_("margin_mode", self.margin_mode.lower())
        self._validate()

    # ------------------------------------------------------------------ validation
    def _validate(self):
        self._validate_cash()
        m = self.max_traj_length
        if m is not None and (not isinstance(m, numbers.Integral) or isinstance(m, (bool, np.bool_)) or m < 1):
            raise ValueError(
                f"max_traj_length must be a positive int or None, got {self.max_traj_length!r}"
            )
        _check_range("leverage", self.leverage, 1, 125, hint=" (1 is spot; > 1 is futures)")
        _check_range("bankrupt_threshold", self.bankrupt_threshold, 0, 1, hi_open=True)
        _check_range("maintenance_margin_rate", self.maintenance_margin_rate, 0, 1, hi_open=True)
        _check_range("slippage", self.slippage, 0, 1, hi_open=True)
        _check_range("transaction_fee", self.transaction_fee, 0, 1, hi_open=True)
        if self.margin_mode != "isolated":
            raise ValueError(f"margin_mode must be 'isolated' (the only mode), got {self.margin_mode!r}")
        if self.include_base_features:
            raise ValueError("include_base_features must be False: the offline env emits only market windows")
        if self.sltp:
            self._validate_sltp()
        else:
            self._validate_levels()
        self._validate_fee_fits_maintenance()

    def _validate_cash(self):
        cash = self.initial_cash
        if isinstance(cash, tuple):
            if len(cash) != 2 or not all(_is_number(c) for c in cash):
                raise ValueError(f"initial_cash must be a number or a (lo, hi) pair, got {cash!r}")
            lo, hi = cash
            if lo != int(lo) or hi != int(hi):
                raise ValueError(
                    f"initial_cash range {cash!r} must hold integers: the draw is an integer in [lo, hi]"
                )
            if not 0 < lo <= hi < 2**31:
                raise ValueError(f"initial_cash range {cash!r} must satisfy 0 < lo <= hi < 2**31")
            object.__setattr__(self, "initial_cash", (int(lo), int(hi)))
        elif not _is_number(cash) or not math.isfinite(cash) or cash <= 0:
            raise ValueError(f"initial_cash must be a positive number or a (lo, hi) pair, got {cash!r}")

    def _validate_levels(self):
        levels = self.action_levels
        if len(levels) < 2:
            raise ValueError(f"action_levels needs at least 2 levels, got {levels}")
        if any(not math.isfinite(a) or not -1 <= a <= 1 for a in levels):
            raise ValueError(f"action_levels must all lie in [-1, 1], got {levels}")
        if len(set(levels)) != len(levels):
            raise ValueError(f"action_levels has duplicates: {levels}")

    def _validate_sltp(self):
        if not self.stoploss_levels or any(not math.isfinite(s) or s >= 0 for s in self.stoploss_levels):
            raise ValueError(
                f"stoploss_levels must be non-empty and all < 0 (e.g. -0.02 = 2% stop), "
                f"got {self.stoploss_levels}"
            )
        if not self.takeprofit_levels or any(
            not math.isfinite(t) or t <= 0 for t in self.takeprofit_levels
        ):
            raise ValueError(
                f"takeprofit_levels must be non-empty and all > 0 (e.g. 0.05 = 5% target), "
                f"got {self.takeprofit_levels}"
            )
        if self.stoploss_levels and any(s <= -1 for s in self.stoploss_levels):
            raise ValueError(f"stoploss_levels must be > -1, got {self.stoploss_levels}")
        if self.trade_mode not in TRADE_MODES:
            raise ValueError(f"trade_mode must be one of {TRADE_MODES}, got {self.trade_mode!r}")
        if self.trade_mode == "fractional":
            _check_range("position_fraction", self.position_fraction, 0, 1, lo_open=True)
        else:
            if not _is_number(self.quantity_per_trade) or not 0 < self.quantity_per_trade < math.inf:
                raise ValueError(
                    f"quantity_per_trade must be > 0 in {self.trade_mode} mode, got {self.quantity_per_trade!r}"
                )

    def _validate_fee_fits_maintenance(self):
        """The fee must fit inside the maintenance buffer (docs/semantics.md §2.1).

        Differs from TorchTrade: checked for every config, bracket mode included, with the directions it
        really allows (Q30).
        """
        L, f, mmr = self.leverage, self.transaction_fee, self.maintenance_margin_rate
        if L <= 1:
            return
        need = []
        if self.allows_long:
            need.append(("long", 1 - 1 / L + mmr))
        if self.allows_short:
            need.append(("short", 1 + 1 / L - mmr))
        for side, c in need:
            if f * c > mmr:
                raise ValueError(
                    f"transaction_fee={f} does not fit inside the maintenance buffer for {side}s at "
                    f"leverage={L}, maintenance_margin_rate={mmr}: need fee * {c:.6g} <= {mmr}, i.e. "
                    f"transaction_fee <= {mmr / c:.6g} (or raise maintenance_margin_rate). Otherwise the "
                    f"bankruptcy price lies beyond the liquidation price."
                )

    # ------------------------------------------------------------------ derived
    @property
    def is_futures(self) -> bool:
        return self.leverage > 1

    @property
    def allows_long(self) -> bool:
        return self.sltp or any(a > 0 for a in self.action_levels)

    @property
    def allows_short(self) -> bool:
        """Shorts can be opened: any negative level (or, with brackets, any leverage) above 1 (§3.3, Q25)."""
        if not self.is_futures:
            return False
        return self.sltp or any(a < 0 for a in self.action_levels)

    @property
    def cash_range(self) -> tuple[float, float]:
        cash = self.initial_cash
        return (float(cash[0]), float(cash[1])) if isinstance(cash, tuple) else (float(cash), float(cash))

    def replace(self, **changes) -> EnvConfig:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_torchtrade(cls, config: Mapping | object) -> EnvConfig:
        """An `EnvConfig` from a TorchTrade `SequentialTradingEnvConfig` / `SequentialTradingEnvSLTPConfig`
        (or their vectorized twins): the dataclass itself or a dict of its fields.

        Same-named fields carry over; `margin_mode` (or `margin_type`) may be TorchTrade's `MarginMode`; the
        SLTP class, or any SLTP-only field (`stoploss_levels`, ...), gives `sltp=True`. `symbol`, `seed` and
        `num_envs` have no meaning here: each is dropped with a `UserWarning` that says what to do instead.
        An unknown key raises `ValueError` with the closest known key.
        """
        from trading_jax.torchtrade_config import envconfig_kwargs

        return cls(**envconfig_kwargs(config))

"""Configuration of the NumPy oracle (`tests.support.reference_env`): spec §2.1 fields, the SLTP fields of §4
and the two §8 fix flags, with the host-side validation of §2.1 / §4."""

from __future__ import annotations

from dataclasses import dataclass, fields
from itertools import product

_MARKET_KEYS = ("time_frames", "window_sizes", "execute_on")


@dataclass(frozen=True)
class RefConfig:
    """Spec §2.1 fields, the SLTP fields of §4, the ``sltp`` switch and the two §8 fix flags."""

    initial_cash: float | tuple[int, int] = 10000
    random_start: bool = True
    max_traj_length: int | None = None
    seed: int | None = 42
    bankrupt_threshold: float = 0.1
    action_levels: tuple[float, ...] = (-1.0, 0.0, 1.0)
    leverage: float = 1.0
    transaction_fee: float = 0.0
    slippage: float = 0.0
    maintenance_margin_rate: float = 0.004
    margin_mode: str = "isolated"
    # SLTP (§4); used only when sltp=True
    sltp: bool = False
    stoploss_levels: tuple[float, ...] = (-0.025, -0.05, -0.1)
    takeprofit_levels: tuple[float, ...] = (0.05, 0.1, 0.2)
    include_hold_action: bool = True
    include_close_action: bool = False
    lock_position_until_sltp: bool = False
    trade_mode: str = "fractional"
    position_fraction: float = 1.0
    quantity_per_trade: float = 0.001
    # §8 decisions
    terminate_on_nonpositive_pv: bool = True  # Q2 FIX
    clear_brackets_on_close: bool = True  # Q26 FIX

    @classmethod
    def from_dict(cls, d: dict, **overrides) -> RefConfig:
        """Build from a golden/TorchTrade config dict; the market keys (time_frames, ...) are ignored."""
        known = {f.name for f in fields(cls)}
        kw = {}
        for k, v in {**d, **overrides}.items():
            if k in _MARKET_KEYS:
                continue
            if k not in known:
                raise ValueError(f"RefConfig: unknown field {k!r}")
            if isinstance(v, list):
                v = tuple(v)
            kw[k] = v
        return cls(**kw)

    def validate(self) -> None:
        """Host-side checks of §2.1 / §4 (ValueError naming the field)."""
        L, f, mmr = float(self.leverage), float(self.transaction_fee), float(self.maintenance_margin_rate)
        if not 1 <= L <= 125:
            raise ValueError(f"leverage={L}: must be in [1, 125]")
        if not 0 <= self.bankrupt_threshold < 1:
            raise ValueError(f"bankrupt_threshold={self.bankrupt_threshold}: must be in [0, 1)")
        if not 0 <= mmr < 1:
            raise ValueError(f"maintenance_margin_rate={mmr}: must be in [0, 1)")
        if not 0 <= self.slippage < 1:
            raise ValueError(f"slippage={self.slippage}: must be in [0, 1)")
        if not 0 <= f < 1:
            raise ValueError(f"transaction_fee={f}: must be in [0, 1)")
        if str(self.margin_mode).lower() != "isolated":
            raise ValueError(f"margin_mode={self.margin_mode!r}: only 'isolated' is supported")
        if isinstance(self.initial_cash, tuple | list):
            if len(self.initial_cash) != 2 or self.initial_cash[0] > self.initial_cash[1]:
                raise ValueError(f"initial_cash={self.initial_cash}: a range must be (lo, hi) with lo <= hi")
        if self.max_traj_length is not None and self.max_traj_length < 1:
            raise ValueError(f"max_traj_length={self.max_traj_length}: must be >= 1 or None")
        levels = tuple(float(a) for a in self.action_levels)
        if self.sltp:
            if not self.stoploss_levels or any(s >= 0 for s in self.stoploss_levels):
                raise ValueError(f"stoploss_levels={self.stoploss_levels}: all must be < 0")
            if not self.takeprofit_levels or any(t <= 0 for t in self.takeprofit_levels):
                raise ValueError(f"takeprofit_levels={self.takeprofit_levels}: all must be > 0")
            mode = self.trade_mode.lower()
            if mode not in ("fractional", "notional", "quantity"):
                raise ValueError(f"trade_mode={self.trade_mode!r}: fractional, notional or quantity")
            if mode == "fractional" and not 0 < self.position_fraction <= 1:
                raise ValueError(f"position_fraction={self.position_fraction}: must be in (0, 1]")
            if mode != "fractional" and not self.quantity_per_trade > 0:
                raise ValueError(f"quantity_per_trade={self.quantity_per_trade}: must be > 0")
            allow_long, allow_short = True, L > 1  # Q30 fix: the real directions of the bracket env
        else:
            if len(levels) < 2 or len(set(levels)) != len(levels) or any(not -1 <= a <= 1 for a in levels):
                raise ValueError(f"action_levels={self.action_levels}: >= 2 distinct levels in [-1, 1]")
            allow_long, allow_short = any(a > 0 for a in levels), any(a < 0 for a in levels)
        if L > 1:
            cs = ([1 - 1 / L + mmr] if allow_long else []) + ([1 + 1 / L - mmr] if allow_short else [])
            if cs and f * max(cs) > mmr:
                raise ValueError(
                    f"transaction_fee={f}: must fit inside the maintenance buffer (fee*{max(cs):.6g} <= mmr={mmr});"
                    " lower the fee or raise maintenance_margin_rate"
                )

    def action_map(self) -> list[tuple[str, float | None, float | None]]:
        """SLTP action index -> (side, sl, tp), side in hold/close/long/short (§4.1)."""
        amap: list[tuple[str, float | None, float | None]] = []
        if self.include_hold_action:
            amap.append(("hold", None, None))
        if self.include_close_action:
            amap.append(("close", None, None))
        pairs = list(product(self.stoploss_levels, self.takeprofit_levels))
        amap += [("long", float(sl), float(tp)) for sl, tp in pairs]
        if self.leverage > 1:
            amap += [("short", -float(sl), -float(tp)) for sl, tp in pairs]
        return amap

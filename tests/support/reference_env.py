"""Independent NumPy oracle of the TorchTrade 0.1.0 offline env (one env, plain Python, float64 money).

Written from ``shared/spec/ENV_SEMANTICS.md`` only (§2.3 reset, §3 scalar step, §4 SLTP step, §10.1
evaluation order). It is the oracle that the JAX env is compared against, and the per-env Python baseline
for the benchmarks. No JAX, no torch.

* Money is Python ``float`` (IEEE float64) and every formula is written in the literal §10.1 order, so
  golden replays are bit-exact. Prices are the float32 execution bars widened to float64.
* Two deliberate fixes of spec §8, each behind a flag (default = the fixed behaviour):
  ``terminate_on_nonpositive_pv`` (Q2: ``terminated`` also when PV <= 0) and ``clear_brackets_on_close``
  (Q26: SL/TP are zeroed by every close and liquidation, not only by a bracket exit).
  Validation also applies the Q30 fix (the SLTP config is fee-checked with its real directions).
* The observation side is kept minimal: ``windows(i)`` (optional) gives the flat market part at exec index
  ``i``; the oracle appends ``account_state``. ``build_exec_bars`` is a deliberately separate, minimal
  implementation of the execution timeline (§1.2, §1.3, §1.5) for golden replay.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from tests.support.reference_bars import build_exec_bars, parse_timeframe
from tests.support.reference_config import RefConfig

__all__ = ["RefConfig", "ReferenceEnv", "build_exec_bars", "parse_timeframe"]


def _f32(x: float) -> float:
    """Round a float64 to float32 and widen back (the value TorchTrade emits as float32)."""
    return float(np.float32(x))


def _sign(x: float) -> int:
    return (x > 0) - (x < 0)


class ReferenceEnv:
    """One scalar env, stepped from Python.

    ``ohlc``: ``[T, 4]`` float32 execution bars (open, high, low, close), §1.5.
    ``config``: a ``RefConfig`` or a dict for ``RefConfig.from_dict``.
    ``windows``: optional; ``windows(i)`` (callable) or ``windows[i]`` (array ``[T, D]``) is the flat float32
    market part of the observation at exec index ``i``. Without it the observation is ``account_state``.

    ``reset(start=None, cash=None)`` and ``step(action, slippage_u=None)`` return one record (dict):
    ``obs`` [D] float32, ``reward`` (float32 value as a Python float), ``pv``, ``balance``, ``position_size``,
    ``entry_price``, ``liq_price``, ``stop_loss``, ``take_profit`` (float64), ``hold_counter`` (int),
    ``terminated``, ``truncated``, ``done``, ``exhausted`` (bool), ``kind`` (label, §3.14 / §4.2),
    ``account_state`` [6] float32, ``close`` and ``bar_ohlc`` (the bar now observed, float64 of float32),
    ``drew`` (did this step take a slippage draw), ``slippage_u`` (the multiplier used, or None),
    ``index`` (exec bar index i) and ``step`` (steps since reset, exhausted ones included).
    Stepping after a step that left PV <= 0 raises ValueError (TorchTrade's reward does; reset instead).
    """

    def __init__(self, ohlc, config: RefConfig | dict, windows=None):
        cfg = config if isinstance(config, RefConfig) else RefConfig.from_dict(config)
        cfg.validate()
        bars = np.asarray(ohlc)
        if bars.ndim != 2 or bars.shape[1] != 4 or bars.shape[0] < 1:
            raise ValueError(f"ohlc: expected [T, 4] with T >= 1, got {bars.shape}")
        self.config = cfg
        self.ohlc32 = bars.astype(np.float32)
        self._bars = self.ohlc32.astype(np.float64).tolist()  # exact widening, Python floats
        self.T = len(self._bars)
        self._windows = windows
        self.L = float(cfg.leverage)
        self.f = float(cfg.transaction_fee)
        self.mmr = float(cfg.maintenance_margin_rate)
        self.s = float(cfg.slippage)
        self.levels = tuple(float(a) for a in cfg.action_levels)
        self.allows_short = any(a < 0 for a in self.levels) and self.L > 1
        self.amap = cfg.action_map() if cfg.sltp else None
        self.num_actions = len(self.amap) if cfg.sltp else len(self.levels)
        # separate streams for start index, cash and slippage (not TorchTrade's streams; Q15)
        ss = np.random.SeedSequence(cfg.seed)
        c0, c1, c2 = ss.spawn(3)
        self._start_rng = np.random.default_rng(c0)
        self._cash_rng = np.random.default_rng(c1)
        self._slip_rng = np.random.default_rng(c2)
        self._ready = False

    # ---- money helpers (§3.8, §3.10, §10.1) -------------------------------------------------------------

    def _upnl(self, x: float) -> float:
        q = self.q
        if q > 0:
            return (x - self.e) * q
        if q < 0:
            return (self.e - x) * abs(q)
        return 0.0

    def _pv(self, x: float) -> float:
        if self.L == 1:
            return self.bal + abs(self.q) * x
        return (self.bal + (abs(self.q * self.e) / self.L)) + self._upnl(x)

    def _liq_price(self, e: float, long: bool) -> float:
        if self.L <= 1:
            return 0.0
        m = 1.0 / self.L
        return e * ((1 - m) + self.mmr) if long else e * ((1 + m) - self.mmr)

    def _target(self, a: float, p: float) -> tuple[float, float]:
        """(q_t, N_t) for level ``a`` at price ``p`` (§3.3 scalar form)."""
        if a == 0:
            return 0.0, 0.0
        if not 0 < p < math.inf:
            raise ValueError(f"cannot size a trade at price {p}")
        pv_p = self._pv(p)
        n_t = ((pv_p * abs(a)) / (1 + (self.L * self.f))) * self.L
        q_t = (n_t / p) * (1.0 if a > 0 else -1.0)
        return q_t, n_t

    def _book_open(self, q_t: float, n: float, p: float) -> bool:
        """Open ``q_t`` (signed) of notional ``n`` at ``p`` from flat; False if refused (§3.5)."""
        margin = n / self.L
        fee = abs(n) * self.f
        if (margin + fee) > self.bal * (1 + 1e-9):
            return False
        self.bal = max(self.bal - (fee + margin), 0.0)
        self.q = q_t
        self.e = p
        self.liq = self._liq_price(p, q_t > 0)
        return True

    def _close(self, x: float) -> None:
        """Book a full close of the position at fill ``x`` (action close, liquidation, bracket exit)."""
        q = self.q
        pnl = self._upnl(x)
        fee = abs(q * x) * self.f
        back = abs(q * self.e) / self.L
        self.bal = max(self.bal + ((pnl - fee) + back), 0.0)
        self.q = 0.0
        self.e = 0.0
        self.liq = 0.0

    def _clear_brackets(self) -> None:
        if self.config.clear_brackets_on_close:
            self.sl = 0.0
            self.tp = 0.0

    def _breached(self, lo: float, hi: float) -> bool:
        return lo <= self.liq if self.q > 0 else hi >= self.liq

    def _liquidate(self, o: float) -> str:
        m = 1.0 / self.L
        e, f = self.e, self.f
        if self.q > 0:
            bk = e * ((1 - m) / (1 - f))
            fill = max(min(o, self.liq), bk)
        else:
            bk = e * ((1 + m) / (1 + f))
            fill = min(max(o, self.liq), bk)
        self._close(fill)
        self._clear_brackets()
        return "liquidation"

    # ---- plain rebalance (§3.4 - §3.7) ------------------------------------------------------------------

    def _rebalance(self, a: float, p: float) -> str:
        if a == self.prev_action and self.q != 0:
            return "hold"
        self.prev_action = a
        a_eff = a if self.allows_short else max(a, 0.0)
        q_t, n_t = self._target(a_eff, p)
        tol = 0.0 if q_t == 0 else max(0.02 * abs(q_t), 1.0 / p)
        q = self.q
        if q != 0 and abs(q_t - q) < tol:
            return "hold"
        if q_t == 0:
            if q == 0:
                return "hold"
            self._close(p)
            return "flat" if self.allows_short else "sell"
        if q == 0:
            return self._open_plain(q_t, n_t, p)
        if _sign(q) != _sign(q_t):
            self._close(p)
            q_t, n_t = self._target(a_eff, p)
            return self._open_plain(q_t, n_t, p)
        if abs(q_t) > abs(q):
            return self._increase(q_t, p)
        return self._decrease(q_t, p)

    def _open_plain(self, q_t: float, n_t: float, p: float) -> str:
        if not self._book_open(q_t, n_t, p):
            return "hold"
        if not self.allows_short:
            return "buy"
        return "long" if q_t > 0 else "short"

    def _increase(self, q_t: float, p: float) -> str:
        q, e = self.q, self.e
        d = q_t - q
        dn = abs(d * p)
        fee = dn * self.f
        margin = dn / self.L
        if (margin + fee) > self.bal * (1 + 1e-9):
            return "hold"
        self.bal = max(self.bal - (fee + margin), 0.0)
        self.e = ((e * abs(q)) + (p * abs(d))) / (abs(q) + abs(d))
        self.q = q_t
        self.liq = self._liq_price(self.e, q_t > 0)
        if not self.allows_short:
            return "buy"
        return "long" if d > 0 else "short"

    def _decrease(self, q_t: float, p: float) -> str:
        q, e = self.q, self.e
        phi = 1 - (abs(q_t) / abs(q))
        qc = q * phi
        if qc > 0:
            pnl = (p - e) * qc
        elif qc < 0:
            pnl = (e - p) * abs(qc)
        else:
            pnl = 0.0
        fee = abs(qc * p) * self.f
        freed = abs(qc * e) / self.L
        self.bal = max(self.bal + ((pnl - fee) + freed), 0.0)
        self.q = q_t
        return "sell" if not self.allows_short else "close_partial"

    # ---- SLTP (§4.2, §4.3) ------------------------------------------------------------------------------

    def _open_brackets(self, side: str, p: float, slp: float, tpp: float) -> str:
        cfg = self.config
        long = side == "long"
        mode = cfg.trade_mode.lower()
        if mode == "fractional":
            a = float(cfg.position_fraction) if (self.L == 1 or long) else -float(cfg.position_fraction)
            q_t, n = self._target(a, p)
            size = abs(q_t)
        elif mode == "notional":
            n = float(cfg.quantity_per_trade)
            size = n / p
        else:
            size = float(cfg.quantity_per_trade)
            n = size * p
        if not self._book_open(size if long else -size, n, p):
            return "hold"
        self.sl = p * (1 + slp)
        self.tp = p * (1 + tpp)
        return side

    def _bar_exits(self, o: float, hi: float, lo: float, c: float) -> str | None:
        q, sl, tp = self.q, self.sl, self.tp
        if q == 0:
            return None
        long = q > 0
        trigger = None
        if sl != 0 or tp != 0:
            if long:
                if sl > 0 and min(o, lo, c) <= sl:
                    trigger = "sl"
                elif tp > 0 and max(o, hi, c) >= tp:
                    trigger = "tp"
            else:
                if sl > 0 and max(o, hi, c) >= sl:
                    trigger = "sl"
                elif tp > 0 and min(o, lo, c) <= tp:
                    trigger = "tp"
        liq = self.liq
        stop_first = trigger == "sl" and sl > 0 and ((sl > liq and o > liq) if long else (sl < liq and o < liq))
        if self.L > 1 and self._breached(lo, hi) and not stop_first:
            return self._liquidate(o)
        if trigger == "sl":
            self._close(min(o, sl) if long else max(o, sl))
            self.sl = self.tp = 0.0
            return "sltp_sl"
        if trigger == "tp":
            self._close(tp)
            self.sl = self.tp = 0.0
            return "sltp_tp"
        return None

    # ---- slippage ---------------------------------------------------------------------------------------

    def _draw(self, injected: float | None) -> float:
        self._drew = True
        if injected is not None:
            u = float(np.float32(injected))
        else:
            u = float(np.float32(self._slip_rng.uniform(1.0 - self.s, 1.0 + self.s)))
        self._u = u
        return u

    # ---- observation ------------------------------------------------------------------------------------

    def _account_state(self, c: float, pv: float) -> np.ndarray:
        q, e = self.q, self.e
        exposure = abs(q * c) / pv if pv > 0 else 0.0
        upnl_pct = self._upnl(c) / abs(q * e) if (q != 0 and e != 0) else 0.0
        if self.L == 1 or q == 0 or c == 0:
            dist = 1.0
        elif q > 0:
            dist = max(0.0, (c - self.liq) / c)
        else:
            dist = max(0.0, (self.liq - c) / c)
        return np.array([exposure, _sign(q), upnl_pct, self.hold, self.L, dist], dtype=np.float32)

    def _observe(self, acct: np.ndarray) -> np.ndarray:
        if self._windows is None:
            return acct
        w = self._windows(self.i) if callable(self._windows) else self._windows[self.i]
        return np.concatenate([np.asarray(w, np.float32).reshape(-1), acct])

    def _record(self, kind: str, reward: float, terminated: bool, truncated: bool, exhausted: bool) -> dict:
        o, hi, lo, c = self._bars[self.i]
        return {
            "obs": self.obs,
            "reward": reward,
            "pv": self.pv,
            "balance": self.bal,
            "position_size": self.q,
            "entry_price": self.e,
            "liq_price": self.liq,
            "hold_counter": self.hold,
            "terminated": terminated,
            "truncated": truncated,
            "done": terminated or truncated,
            "exhausted": exhausted,
            "kind": kind,
            "account_state": self.acct,
            "stop_loss": self.sl,
            "take_profit": self.tp,
            "close": c,
            "bar_ohlc": (o, hi, lo, c),
            "drew": self._drew,
            "slippage_u": self._u if self._drew else None,
            "index": self.i,
            "step": self.step_counter,
        }

    # ---- public API -------------------------------------------------------------------------------------

    def reset(self, start: int | None = None, cash: float | None = None) -> dict:
        """Start an episode (§2.3). ``start`` forces the start bar; ``cash`` forces the initial cash."""
        cfg, T, M = self.config, self.T, self.config.max_traj_length
        hi_start = T - 1 if M is None else max(0, T - M)
        if start is None:
            start = int(self._start_rng.integers(0, hi_start + 1)) if cfg.random_start else 0
        elif not 0 <= start <= hi_start:
            raise ValueError(f"start={start}: must be in [0, {hi_start}]")
        end = T if M is None else min(start + M, T)
        if cash is None:
            ic = cfg.initial_cash
            if isinstance(ic, tuple | list):
                cash = float(self._cash_rng.integers(int(ic[0]), int(ic[1]), endpoint=True))
            else:
                cash = float(ic)
        self.start, self.end = start, end
        self.max_len = end - start
        self.initial_pv = self.bal = float(cash)
        self.q = self.e = self.liq = 0.0
        self.sl = self.tp = 0.0
        self.hold = 0
        self.hold_dir = 0
        self.prev_action = None
        self.step_counter = 0
        self.i = start
        self.exhausted = start + 1 >= end
        self.pv = self.bal
        self._drew, self._u = False, None
        self.acct = self._account_state(self._bars[start][3], self.pv)
        self.obs = self._observe(self.acct)
        self._exhaustion = None
        self._ready = True
        return self._record("hold", 0.0, False, False, False)

    def step(self, action: int, slippage_u: float | None = None) -> dict:
        """One step (§3.2 / §4.2). ``slippage_u`` is used if this step draws (else ignored)."""
        if not self._ready:
            raise RuntimeError("call reset() first")
        if not 0 <= int(action) < self.num_actions:
            raise ValueError(f"action={action}: must be in [0, {self.num_actions})")
        self.step_counter += 1
        self._drew, self._u = False, None
        if self.exhausted:  # §3.11: same obs, reward 0, truncated, no draw, no state change
            if self._exhaustion is None:
                self._exhaustion = self._record("hold", 0.0, False, True, True)
            return {**self._exhaustion, "step": self.step_counter}
        p_ref = self._bars[self.i][3]
        self.i += 1
        self.exhausted = self.i + 1 >= self.end
        o, hi, lo, c = self._bars[self.i]
        if self.config.sltp:
            kind = self._step_sltp(int(action), p_ref, slippage_u, o, hi, lo, c)
        else:
            u = self._draw(slippage_u)
            a = self.levels[int(action)]
            kind = self._rebalance(a, p_ref * u)
            if self.L > 1 and self.q != 0 and self._breached(lo, hi):
                kind = self._liquidate(o)
        d = _sign(self.q)
        self.hold = 0 if d == 0 else (1 if d != self.hold_dir else self.hold + 1)
        self.hold_dir = d
        old_pv = self.pv
        new_pv = self._pv(c)
        if old_pv <= 0:
            raise ValueError(f"previous portfolio value {old_pv} <= 0: the episode should have ended (reset)")
        reward = -10.0 if new_pv <= 0 else _f32(math.log(new_pv / old_pv))
        self.pv = new_pv
        terminated = new_pv < self.config.bankrupt_threshold * self.initial_pv
        if self.config.terminate_on_nonpositive_pv:
            terminated = terminated or new_pv <= 0
        truncated = self.exhausted or self.step_counter >= self.max_len
        self.acct = self._account_state(c, new_pv)
        self.obs = self._observe(self.acct)
        return self._record(kind, reward, terminated, truncated, False)

    def _step_sltp(self, action: int, p_ref: float, u_in: float | None, o, hi, lo, c) -> str:
        side, slp, tpp = self.amap[action]
        if self.config.lock_position_until_sltp and self.q != 0:
            side = "hold"
        kind = "hold"
        if side == "close":
            if self.q != 0:
                self._close(p_ref * self._draw(u_in))
                self._clear_brackets()
                kind = "close"
        elif side in ("long", "short"):
            p = p_ref * self._draw(u_in)
            if not ((side == "long" and self.q > 0) or (side == "short" and self.q < 0)):
                if self.q != 0:
                    self._close(p)
                    self._clear_brackets()
                kind = self._open_brackets(side, p, slp, tpp)
        return self._bar_exits(o, hi, lo, c) or kind

    def rollout(self, actions: Sequence[int], slippage_u: Sequence[float | None] | None = None) -> list[dict]:
        """Reset-free convenience: step each action (optionally injecting ``slippage_u[t]``)."""
        us = slippage_u if slippage_u is not None else [None] * len(actions)
        return [self.step(a, u) for a, u in zip(actions, us, strict=True)]

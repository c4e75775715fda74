"""The JAX env replays every golden trace recorded from torchtrade 0.1.0 (tests/golden/README.md).

x64: money within `1e-9 |b| + 1e-9 cash`, rewards 1e-6, labels, flags, hold counters, account state and every
window exact. In practice money is within ~2e-15 relative: XLA:CPU contracts `a * b + c` into a fused
multiply-add, which rounds once where the reference rounds twice. Without FMA instructions
(`XLA_FLAGS=--xla_cpu_max_isa=AVX`) every number is bit-for-bit the reference's; `test_bit_for_bit_without_fma`
checks that in a subprocess. float32: the same labels and flags; money within 1e-5
relative; the two steps that wipe an all-in position at the bankruptcy price leave a rounding residue, so
their reward is -10 or the log of a tiny residue (<= -10) depending on the last bit.
"""

from __future__ import annotations

import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from tests.support.golden_cases import CASES
from tests.support.paths import REPO_ROOT
from tests.support.replay import MONEY, expected, expected_obs, money_error, replay
from trading_jax.env import ActionKind

STRICT = os.environ.get("TRADING_JAX_STRICT_BITS") == "1"


def _check_flags_and_labels(got, rec):
    kinds = np.array([ActionKind[k.upper()] for k in expected(rec, "kind")])
    np.testing.assert_array_equal(got["kind"], kinds, err_msg="action kinds")
    for flag in ("terminated", "truncated"):
        np.testing.assert_array_equal(got[flag], expected(rec, flag), err_msg=flag)
    np.testing.assert_array_equal(got["terminated"] | got["truncated"], expected(rec, "done"))
    exhausted = np.array([s.get("exhausted", False) for s in rec["steps"]])
    np.testing.assert_array_equal(got["exhausted"], exhausted, err_msg="exhausted")
    np.testing.assert_array_equal(got["hold_counter"], expected(rec, "hold_counter"), err_msg="hold counter")


def _open_brackets(got, rec):
    """Recorded SL/TP where a position is open (Q26: we clear stale brackets, the reference keeps them)."""
    is_open = expected(rec, "position_size") != 0
    return is_open, {f: expected(rec, f)[is_open] for f in ("stop_loss", "take_profit")}


@pytest.mark.parametrize("case", CASES)
def test_golden_x64(case):
    with jax.enable_x64(True):
        got, rec = replay(case)
    cash = float(rec["config"]["initial_cash"])
    _check_flags_and_labels(got, rec)
    for field in MONEY:
        if STRICT:
            np.testing.assert_array_equal(got[field], expected(rec, field), err_msg=field)
        err = money_error(got[field], expected(rec, field), cash)
        assert err.max() <= 1.0, f"{field}: step {err.argmax() + 1} off by {err.max():.3g} x tolerance"
    np.testing.assert_allclose(got["reward"], expected(rec, "reward"), rtol=0, atol=0 if STRICT else 1e-6)
    if "stop_loss" in rec["steps"][0]:
        is_open, want = _open_brackets(got, rec)
        for field, values in want.items():
            assert money_error(got[field][is_open], values, cash).max(initial=0) <= 1.0, field
        assert np.all(got["stop_loss"][~is_open] == 0) and np.all(got["take_profit"][~is_open] == 0)
    np.testing.assert_array_equal(got["reset_obs"], expected_obs(got["env"], rec["reset"]))
    want_obs = np.stack([expected_obs(got["env"], s) for s in rec["steps"]])
    np.testing.assert_array_equal(got["obs"], want_obs, err_msg="observations (windows + account state)")


@pytest.mark.parametrize("case", CASES)
def test_golden_float32(case):
    got, rec = replay(case)
    assert got["pv"].dtype == np.float32
    cash = float(rec["config"]["initial_cash"])
    _check_flags_and_labels(got, rec)
    for field in MONEY:
        want = expected(rec, field)
        np.testing.assert_allclose(got[field], want, rtol=1e-5, atol=1e-5 * cash, err_msg=field)
    want_reward = expected(rec, "reward")
    wiped = np.abs(expected(rec, "pv")) < 1e-9 * cash
    np.testing.assert_allclose(got["reward"][~wiped], want_reward[~wiped], rtol=0, atol=2e-5)
    assert np.all(got["reward"][wiped] <= -10), "a wiped all-in position gives -10 or ln(residue) < -10"
    want_obs = np.stack([expected_obs(got["env"], s) for s in rec["steps"]])
    np.testing.assert_allclose(got["obs"], want_obs, rtol=1e-4, atol=1e-5, err_msg="observations")


@pytest.mark.skipif(STRICT, reason="this is the strict run itself")
def test_bit_for_bit_without_fma():
    """Spec §10: float64 money in the §10.1 order reproduces TorchTrade exactly, once FMA is off."""
    env = dict(os.environ, XLA_FLAGS="--xla_cpu_max_isa=AVX", TRADING_JAX_STRICT_BITS="1", JAX_PLATFORMS="cpu")
    test = f"{__file__}::test_golden_x64"
    cmd = [sys.executable, "-m", "pytest", "-q", "-o", "addopts=", "-p", "no:cacheprovider", test]
    out = subprocess.run(cmd, env=env, cwd=REPO_ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert f"{len(CASES)} passed" in out.stdout

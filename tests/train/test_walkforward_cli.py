"""`python -m train.walkforward` end to end (2 windows x 2 seeds, tiny budgets, synthetic data), and its errors."""

import json
import os
import subprocess
import sys

import pytest

from tests.support.paths import REPO_ROOT
from tests.support.train_synth import sine_frame
from train.loggers import read_metrics
from train.walkforward import main

METRICS = {"log_return", "sharpe", "max_drawdown", "trades"}
BASELINES = {"buy_and_hold", "buy_and_hold_1x", "flat", "random", "momentum"}


@pytest.mark.slow
def test_walkforward_cli_writes_the_report(tmp_path):
    data = tmp_path / "sine.csv"
    sine_frame(24 * 16).to_csv(data)
    run_dir = tmp_path / "run"
    cmd = [
        sys.executable, "-m", "train.walkforward",
        f"env.data_path={data}", "env.window_sizes=[8]", "env.num_envs=8",
        "collector.frames_per_batch=64", "collector.total_frames=128", "loss.mini_batch_size=32",
        "model.hidden_size=16", "model.num_layers=1", "num_seeds=2",
        "walkforward.train_days=6", "walkforward.test_days=3", "walkforward.val_days=1",
        "walkforward.num_windows=2", "walkforward.random_seeds=2", "walkforward.bootstrap_samples=200",
        "walkforward.momentum_bars=6", "checkpoint.enabled=false", "logger.progress=false",
        f"logger.run_dir={run_dir}",
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=str(REPO_ROOT), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| buy_and_hold |" in proc.stdout and "Only 2 test window(s)" in proc.stdout
    doc = json.loads((run_dir / "walkforward.json").read_text())
    assert {"windows", "aggregate", "config"} <= set(doc)
    assert len(doc["windows"]) == 2
    for i, win in enumerate(doc["windows"]):
        assert win["train"] == [f"2024-01-{1 + 3 * i:02d}T00:00:00", f"2024-01-{7 + 3 * i:02d}T00:00:00"]
        assert win["test"][0] == win["train"][1] and len(win["test"]) == 2
        assert set(win["agent"]) == METRICS and all(len(v) == 2 for v in win["agent"].values())
        assert set(win["baselines"]) == BASELINES
        assert all(set(b) == METRICS for b in win["baselines"].values())
        assert len(win["baselines"]["random"]["log_return"]) == 2 and win["baselines"]["flat"]["trades"] == [0, 0]
        assert len(win["val_agent"]["log_return"]) == 2
    agg = doc["aggregate"]
    for name in ("agent_minus_buy_and_hold", "agent_minus_momentum"):
        assert set(agg[name]) >= {"mean", "iqm", "ci95"} and agg[name]["ci95"][0] <= agg[name]["ci95"][1]
    assert 0.0 <= agg["p_beats_buy_and_hold"] <= 1.0
    assert doc["config"]["walkforward"]["num_windows"] == 2 and doc["config"]["num_seeds"] == 2
    assert (run_dir / "walkforward.md").read_text().startswith("# Walk-forward evaluation")
    assert os.path.getsize(run_dir / "plots" / "forest.png") > 0 and (run_dir / "plots" / "equity_curves.png").exists()
    logged = [r for r in read_metrics(str(run_dir)) if "walkforward/p_beats_buy_and_hold" in r]
    assert [r["step"] for r in logged] == [2]
    assert logged[0]["walkforward/p_beats_buy_and_hold"] == agg["p_beats_buy_and_hold"]
    assert (run_dir / "windows" / "w01" / "features.json").exists()


@pytest.mark.parametrize(
    "arg, message",
    [
        ("sweep.optim.lr=[1e-4,3e-4]", "set walkforward.val_days > 0"),
        ("sweep.optim.lrr=[1e-4]", "Did you mean sweep.optim.lr?"),
        ("walkforward.test_dayz=3", "Did you mean walkforward.test_days"),
        ("walkforward.num_windows=0", "num_windows must be >= 1"),
    ],
)
def test_errors_are_one_line_and_exit_2(arg, message, capsys):
    assert main([arg]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and err.startswith("error: ")

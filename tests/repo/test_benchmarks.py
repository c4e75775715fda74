"""Smoke test of benchmarks/: the env benchmark and its Python baselines at a tiny size, in-process (< 30 s)."""

import argparse
import json
import re
import subprocess
import sys
import time

import numpy as np
import pytest

from benchmarks import baselines, configs, env_throughput, report
from benchmarks.common import SCHEMA, int_list, read_json
from benchmarks.common import usable_cores as load_cores
from tests.support.paths import REPO_ROOT


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    result = env_throughput.main(["--quick", "--allow-busy", "--out", str(out)])
    return out, result


def test_quick_run_writes_json_and_png(quick):
    out, result = quick
    on_disk = read_json(str(out / "env_throughput-cpu.json"))
    assert on_disk["schema"] == SCHEMA and on_disk["kind"] == "env_throughput"
    assert (out / "env_throughput-cpu.png").stat().st_size > 10_000
    for key in ("cpu_model", "cpu_cores_usable", "ram_total_bytes", "jax", "jaxlib", "backend", "device_kind",
                "dtype", "date"):
        assert key in on_disk["machine"], key
    [row] = on_disk["env"]
    assert (row["config"], row["dtype"], row["num_envs"], row["num_steps"]) == ("a", "float32", 8, 64)
    assert row["observations_consumed"] and "consumed" in on_disk["observations"]
    assert row["compile_s"] > 0 and len(row["times_s"]) == 1 and row["steps_per_s"] > 0
    assert row["obs_dim"] == 24 * 5 + 6 and row["num_actions"] == 3
    assert np.isfinite(row["checksum"]["obs_sum"]) and row["checksum"]["obs_sum"] != 0
    names = [b["name"] for b in on_disk["baselines"]]
    assert names == ["scalar_loop", "process_pool", "process_pool_lockstep"]
    assert all(b["steps_per_s"] > 0 and b["obs_dim"] == row["obs_dim"] for b in on_disk["baselines"])
    [sp] = on_disk["speedups"]
    assert sp["band"] == "8-32"
    assert sp["x_scalar_loop"] == pytest.approx(row["steps_per_s"] / on_disk["baselines"][0]["steps_per_s"])
    assert on_disk["reference_published"]["env"]["torch_vectorized"]["1024"] == 1.5e6
    assert on_disk["memory"] is None
    for load in (on_disk["load"], row["load"]):  # the machine's load at start, and while the point was timed
        assert 0 <= load["others_cores"] <= load_cores() and isinstance(load["busy"], bool)
    json.dumps(result)  # the in-memory result is plain JSON too


def test_report_renders_and_combines(quick, tmp_path):
    out, result = quick
    text = report.env_markdown(result)
    assert "NOT measured here" in text and "| 8 |" in text and "scalar Python loop" in text
    report.main([str(out / "env_throughput-cpu.json")] * 2 + ["--out", str(tmp_path)])
    assert (tmp_path / "combined-env.png").is_file()


def test_baseline_windows_match_the_market():
    ohlc, windows, money = baselines.reference_inputs("a")
    market = configs.market("a")
    assert ohlc.shape == (market.num_bars, 4) and windows.shape == (market.num_bars, 24 * 5)
    for i in (0, 1, market.num_bars // 2, market.num_bars - 1):
        flat = np.concatenate([w.reshape(-1) for w in market.windows_at(i).values()])
        np.testing.assert_array_equal(windows[i], flat)
    assert money["leverage"] == 3 and money["initial_cash"] == 1000


def test_int_list():
    assert int_list("1, 8,64k") == [1, 8, 65536]
    with pytest.raises(ValueError):
        int_list("0")


def test_profile_step_lists_the_step_kernels(capsys):
    """`python -m benchmarks.profile_step` finds the step loop's kernels and their op counts."""
    from benchmarks import profile_step

    profile_step.main(["--num-envs", "8"])
    out = capsys.readouterr().out
    assert "flops" in out
    kernels = int(out.split("step loop: ")[1].split(" kernels")[0])
    ops = int(out.split("kernels, ")[1].split(" element-wise")[0])
    assert 10 <= kernels <= 200 and 100 <= ops <= 5000


# --------------------------------------------------------------------------------------- machine load
def test_load_meter_counts_this_process_apart_from_the_others():
    """CPU burnt by this process is `own_cores`, never `others_cores` (what marks a figure busy)."""
    from benchmarks.common import LoadMeter

    with LoadMeter(min_window_s=0.0) as meter:
        cpu0, t_end = time.process_time(), time.perf_counter() + 0.6
        while time.perf_counter() < t_end:
            pass
        spun = time.process_time() - cpu0
    load = meter.result
    assert load["wall_s"] >= 0.6 and spun > 0.05
    assert load["own_cores"] == pytest.approx(spun / load["wall_s"], abs=0.05)  # CPU times tick at 10 ms
    assert 0 <= load["others_cores"] <= load_cores() - load["own_cores"] + 0.05
    assert load["busy"] == (load["others_cores"] > load["busy_threshold_cores"])


def test_busy_machine_is_refused_unless_allowed(monkeypatch, capsys):
    from benchmarks import common

    busy = {"others_cores": 1.4, "busy": True, "loadavg": [3.0, 2.0, 1.0],
            "top_others": [{"pid": 42, "name": "compiler", "cores": 1.3}]}
    monkeypatch.setattr(common, "machine_load", lambda sample_s=None: busy)
    with pytest.raises(SystemExit, match="--allow-busy"):
        common.check_load(False, "bench")
    assert common.check_load(True, "bench") is busy
    err = capsys.readouterr().err
    assert "WARNING" in err and "compiler (42) 1.30" in err
    quiet = dict(busy, others_cores=0.05, busy=False)
    monkeypatch.setattr(common, "machine_load", lambda sample_s=None: quiet)
    assert common.check_load(False, "bench") is quiet


# --------------------------------------------------------------------------------------- new commands
@pytest.mark.parametrize("module", ["benchmarks.vs_torchtrade", "benchmarks.profile_iteration"])
def test_help_runs_without_torch(module):
    """`--help` works, and imports no torch (CI has none: the comparison is an optional extra)."""
    code = (f"import sys, runpy; sys.argv = ['{module}', '--help']\n"
            f"try:\n    runpy.run_module('{module}', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "print('torch imported:', 'torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "--allow-busy" in proc.stdout and "torch imported: False" in proc.stdout


def test_vs_torchtrade_names_the_extra_when_torch_is_missing(monkeypatch):
    from benchmarks import torchtrade_ref

    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` raises ImportError
    with pytest.raises(SystemExit, match=re.escape('pip install -e ".[compare]"')):
        torchtrade_ref.require_torch()


def test_profile_shapes_parse():
    from benchmarks.profile_iteration import shape_list

    assert shape_list("64x100, 64X20") == [(64, 100), (64, 20)]
    for bad in ("64", "0x20", "64x"):
        with pytest.raises(argparse.ArgumentTypeError):
            shape_list(bad)


def test_trace_summary_counts_exclusive_time():
    """Nested thunks: a parent's exclusive time excludes its children (the trace's events nest on a thread)."""
    from benchmarks.trace_summary import _exclusive

    events = [{"name": "while.1", "ts": 0.0, "dur": 10.0}, {"name": "dot.2", "ts": 2.0, "dur": 3.0},
              {"name": "copy.3", "ts": 6.0, "dur": 2.0}, {"name": "copy.4", "ts": 12.0, "dur": 2.0}]
    assert sorted(_exclusive(events)) == [("copy.3", 2.0), ("copy.4", 2.0), ("dot.2", 3.0), ("while.1", 5.0)]

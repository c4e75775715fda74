"""Smoke test of benchmarks/: the env benchmark and its Python baselines at a tiny size, in-process (< 30 s)."""

import json

import numpy as np
import pytest

from benchmarks import baselines, configs, env_throughput, report
from benchmarks.common import SCHEMA, int_list, read_json


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    result = env_throughput.main(["--quick", "--out", str(out)])
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

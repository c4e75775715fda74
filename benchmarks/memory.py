"""Peak memory per env of the env-throughput program, and the largest num_envs that fits.

    python -m benchmarks.memory [--config a] [--sizes 1024,4096,16384,65536] [--dtype float32]

* CPU: each size runs in a FRESH subprocess (build env, compile, run one chunk of steps) that reports its
  peak RSS (`getrusage` ru_maxrss). bytes/env is the slope of a least-squares line through
  (num_envs, peak RSS); the intercept is the fixed cost (Python, JAX, XLA compile, market tables). The
  largest num_envs that fits is an ESTIMATE: (available RAM - intercept) / slope.
* GPU: in this process (so run it before anything else: the peak counter never goes down), num_envs
  doubled from the first size until XLA reports an out-of-memory error, a time cap or a size cap;
  `peak_bytes_in_use` of the device after each size. bytes/env = (peak - bytes in use before, i.e. the
  market tables) / num_envs at the largest size that ran.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import psutil

from benchmarks import configs
from benchmarks.common import int_list
from benchmarks.programs import make_program

DEFAULT_CPU_SIZES = (4096, 16384, 65536, 262144)
DEFAULT_GPU_START = 65536
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 8  # one chunk of this many steps per size: memory does not grow with the step count


def _run_once(config: str, num_envs: int, dtype: str) -> dict:
    """Build, compile and run the env-throughput program once at `num_envs` (one chunk of STEPS).

    Returns XLA's buffer assignment of the program (`compiled.memory_analysis()`): temp, argument and
    output bytes (deterministic, whatever the allocator does).
    """
    with jax.enable_x64(dtype == "float64"):
        env, params = configs.build_env(config)
        args = (params, jax.random.PRNGKey(0), jnp.int32(1))
        compiled = make_program(env, num_envs, STEPS, consume_obs=True).lower(*args).compile()
        jax.block_until_ready(compiled(*args))
    ma = compiled.memory_analysis()
    if ma is None:
        return {}
    return {f"xla_{k}_bytes": int(getattr(ma, f"{k}_size_in_bytes", 0)) for k in ("temp", "argument", "output")}


def _child(config: str, num_envs: int, dtype: str) -> dict:
    configs.build_env(config)
    rss_setup = psutil.Process().memory_info().rss
    t0 = time.perf_counter()
    xla = _run_once(config, num_envs, dtype)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    return {"num_envs": num_envs, "peak_rss_bytes": int(peak), "rss_after_setup_bytes": int(rss_setup),
            "seconds": time.perf_counter() - t0, **xla}


def _xla_slope(points: list[dict]) -> float | None:
    """Bytes per env of XLA's temp buffers: the slope between the smallest and largest size."""
    pts = sorted((p["num_envs"], p["xla_temp_bytes"]) for p in points if "xla_temp_bytes" in p)
    if len(pts) < 2 or pts[-1][0] == pts[0][0]:
        return None
    return (pts[-1][1] - pts[0][1]) / (pts[-1][0] - pts[0][0])


def measure_cpu(config: str = "a", sizes=DEFAULT_CPU_SIZES, dtype: str = "float32", timeout_s: float = 300) -> dict:
    """Peak RSS per size, each in a fresh subprocess; linear fit; largest num_envs (estimate)."""
    points = []
    for n in sizes:
        cmd = [sys.executable, "-m", "benchmarks.memory", "--child", "--config", config, "--sizes", str(n),
               "--dtype", dtype]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, cwd=REPO)
        if proc.returncode != 0:
            points.append({"num_envs": n, "error": proc.stderr.strip().splitlines()[-1:] or ["failed"]})
            continue
        points.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(f"  memory {config} num_envs={n:>8}: peak RSS {points[-1]['peak_rss_bytes'] / 2**20:.0f} MiB",
              file=sys.stderr, flush=True)
    ok = [p for p in points if "peak_rss_bytes" in p]
    out = {"backend": "cpu", "config": config, "dtype": dtype, "method": "peak RSS of a fresh subprocess per size",
           "points": points, "bytes_per_env": None, "fixed_bytes": None, "largest_num_envs": None,
           "xla_temp_bytes_per_env": _xla_slope(ok)}
    if len(ok) >= 2:
        x = np.array([p["num_envs"] for p in ok], float)
        y = np.array([p["peak_rss_bytes"] for p in ok], float)
        slope, intercept = np.polyfit(x, y, 1)
        available = psutil.virtual_memory().available
        out.update(fixed_bytes=float(intercept), ram_available_bytes=int(available))
        if slope <= 0 or slope * (x.max() - x.min()) < 16 * 2**20:
            out["bytes_per_env_note"] = ("not resolved: the per-env part is below the noise of the fixed cost at "
                                         "these sizes (use larger --memory sizes)")
        else:
            out["bytes_per_env"] = float(slope)
            out["largest_num_envs"] = int((available - intercept) / slope)
            out["largest_num_envs_note"] = ("estimate: (available RAM - fixed bytes) / bytes per env, a linear "
                                            "extrapolation of the measured sizes, not run")
    return out


def measure_gpu(config: str = "a", start: int = DEFAULT_GPU_START, dtype: str = "float32",
                time_cap_s: float = 45.0, max_envs: int = 1 << 26) -> dict:
    """Double num_envs from `start` until out-of-memory, `time_cap_s` or `max_envs`; device peak bytes each."""
    dev = jax.devices()[0]
    with jax.enable_x64(dtype == "float64"):
        configs.build_env(config)
    stats = lambda: dev.memory_stats() or {}  # None on backends without allocator statistics
    base = stats().get("bytes_in_use", 0)
    points, stop, n = [], "size cap", start
    t0 = time.perf_counter()
    while n <= max_envs:
        if time.perf_counter() - t0 > time_cap_s:
            stop = "time cap"
            break
        try:
            xla = _run_once(config, n, dtype)
        except Exception as err:  # XlaRuntimeError RESOURCE_EXHAUSTED (type differs across jax versions)
            if "RESOURCE_EXHAUSTED" in str(err) or "out of memory" in str(err).lower():
                stop = f"out of memory at num_envs={n}"
                break
            raise
        peak = stats().get("peak_bytes_in_use", 0)
        points.append({"num_envs": n, "peak_bytes_in_use": int(peak), "seconds": time.perf_counter() - t0, **xla})
        print(f"  memory {config} num_envs={n:>9}: device peak {peak / 2**20:.0f} MiB", file=sys.stderr, flush=True)
        n *= 2
    out = {"backend": jax.default_backend(), "device_kind": dev.device_kind, "config": config, "dtype": dtype,
           "method": "device peak_bytes_in_use while doubling num_envs", "base_bytes_in_use": int(base),
           "bytes_limit": int(stats().get("bytes_limit", 0)), "points": points, "stopped_by": stop,
           "bytes_per_env": None, "largest_num_envs": None}
    out["xla_temp_bytes_per_env"] = _xla_slope(points)
    if points:
        last = points[-1]
        out["bytes_per_env"] = (last["peak_bytes_in_use"] - base) / last["num_envs"]
        out["largest_num_envs"] = last["num_envs"]
        out["largest_num_envs_note"] = ("measured: the largest size that ran" if stop.startswith("out of memory")
                                        else f"measured lower bound: stopped by {stop} before running out of memory")
    return out


def measure(config: str = "a", sizes=None, dtype: str = "float32") -> dict:
    """CPU: fresh subprocess per size. Accelerator: doubling from the first size (default 65536)."""
    if jax.default_backend() == "cpu":
        return measure_cpu(config, sizes or DEFAULT_CPU_SIZES, dtype)
    return measure_gpu(config, (sizes or [DEFAULT_GPU_START])[0], dtype)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(prog="python -m benchmarks.memory", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="a")
    p.add_argument("--sizes", type=int_list, default=None)
    p.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        res = _child(args.config, args.sizes[0], args.dtype)
        print(json.dumps(res))
        return res
    res = measure(args.config, args.sizes, args.dtype)
    print(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    main()

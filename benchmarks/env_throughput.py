"""Env-only throughput: steps/s of the vmapped, scan-jitted env against num_envs, with baselines.

    python -m benchmarks.env_throughput                          # configs a,b,c; float32; baselines; memory
    python -m benchmarks.env_throughput --x64                     # float32 and float64 money
    python -m benchmarks.env_throughput --quick                   # smoke run: config a, 8 envs, tiny budget
    python -m benchmarks.env_throughput --num-envs 64,256 --configs a --repeats 3 --out /tmp/bench

Each measurement is ONE jitted program (`make_program`): reset `num_envs` lanes (vmap), then
`num_chunks` (a runtime argument) x `lax.scan` over `chunk` steps of `jax.vmap(env.step)`, random actions
drawn inside the program. Unless `--no-obs`, each step's observation is carried to the next step, as a
policy would read it, so XLA has to build every observation ("observations consumed"); rewards and finished
episodes are summed per lane. Because the step count is a runtime argument, one compile serves the
calibration (steps chosen so a timed call lasts `--target-s`) and the timed calls. Compile time
(`lower().compile()`) is reported apart; after a warm-up call the median of `--repeats` blocked calls is
quoted. Steps/s = num_envs x steps / median wall time. `--devices 1,2` also splits the lanes over several
local devices (on CPU: host devices, one per core).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

import jax
import jax.numpy as jnp

from benchmarks import baselines, configs, memory, report
from benchmarks.common import (
    DEFAULT_OUT,
    REFERENCE_PUBLISHED,
    SCHEMA,
    LoadMeter,
    add_load_args,
    check_load,
    compile_timed,
    enable_compilation_cache,
    int_list,
    machine_info,
    median,
    str_list,
    time_call,
    time_repeats,
    write_json,
)
from benchmarks.programs import make_program

DEFAULT_NUM_ENVS = (1, 8, 32, 64, 256, 1024, 4096, 16384)
DTYPES = ("float32", "float64")


def calibrate(fn, args, target_s: float, max_chunks: int) -> tuple[int, float]:
    """Grow `num_chunks` until one call lasts about `target_s`; returns `(num_chunks, last pilot seconds)`."""
    n, t = 1, time_call(fn, *args, jnp.int32(1))[1]
    for _ in range(8):  # grow, then check once more at the chosen size (the machine may be noisy)
        if 0.6 * target_s <= t <= 1.5 * target_s or (n >= max_chunks and t < target_s) or (n == 1 and t > target_s):
            break
        n = min(max_chunks, max(1, n * 8 if t < 1e-3 else round(n * target_s / t)))
        t = time_call(fn, *args, jnp.int32(n))[1]
    return n, t


def measure(name: str, num_envs: int, *, dtype: str = "float32", consume_obs: bool = True, repeats: int = 5,
            target_s: float = 0.5, chunk: int = 32, steps: int | None = None, seed: int = 0, devices: int = 1) -> dict:
    """One (config, num_envs, dtype, devices) point: compile time apart, warm-up, median of `repeats` timed
    calls. With `devices > 1` the lanes are split evenly over that many local devices."""
    if num_envs % devices:
        raise ValueError(f"num_envs={num_envs} does not split over {devices} devices")
    with jax.enable_x64(dtype == "float64"):
        env, params = configs.build_env(name)
        if steps is not None:
            chunk = max(1, min(chunk, steps))
        program = make_program(env, num_envs // devices, chunk, consume_obs, devices)
        key = jax.random.PRNGKey(seed)
        compiled, compile_s = compile_timed(program, params, key, jnp.int32(1))
        _, warmup_s = time_call(compiled, params, key, jnp.int32(1))
        if steps is None:
            num_chunks, _ = calibrate(compiled, (params, key), target_s, max_chunks=1 << 20)
        else:
            num_chunks = math.ceil(steps / chunk)
        with LoadMeter() as meter:
            times = time_repeats(compiled, params, key, jnp.int32(num_chunks), repeats=repeats)
        out = jax.device_get(compiled(params, key, jnp.int32(num_chunks)))
    num_steps = num_chunks * chunk
    med = median(times)
    return {
        "config": name,
        "description": configs.describe(name),
        "dtype": dtype,
        "devices": devices,
        "observations_consumed": consume_obs,
        "num_envs": num_envs,
        "num_steps": num_steps,
        "chunk": chunk,
        "obs_dim": int(env.observation_shape[0]),
        "num_actions": int(env.num_actions),
        "compile_s": compile_s,
        "warmup_s": warmup_s,
        "times_s": times,
        "median_s": med,
        "steps_per_s": num_envs * num_steps / med,
        "checksum": {k: float(v) for k, v in out.items()},
        "load": meter.result,
    }


def speedups(env_rows: list[dict], baseline_rows: list[dict]) -> list[dict]:
    """JAX env steps/s ÷ each baseline, for config (a) (the baselines' config) in the seed's bands; the last
    ratio is against TorchTrade's PUBLISHED scalar figure (9.2k steps/s, not measured here)."""
    bands = {"8-32": (8, 32), "64-256": (64, 256)}
    base = {b["name"]: b["steps_per_s"] for b in baseline_rows}
    out = []
    if not base:
        return out
    for row in env_rows:
        if row["config"] != baselines.CONFIG:
            continue
        for band, (lo, hi) in bands.items():
            if lo <= row["num_envs"] <= hi:
                out.append({
                    "band": band, "config": row["config"], "dtype": row["dtype"], "devices": row.get("devices", 1),
                    "observations_consumed": row["observations_consumed"], "num_envs": row["num_envs"],
                    "steps_per_s": row["steps_per_s"],
                    **{f"x_{k}": row["steps_per_s"] / v for k, v in base.items() if v > 0},
                    "x_torchtrade_scalar_published": row["steps_per_s"] / REFERENCE_PUBLISHED["env"]["scalar_loop"],
                })
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.env_throughput", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num-envs", type=int_list, default=list(DEFAULT_NUM_ENVS), help="comma list (64k = 65536)")
    p.add_argument("--configs", type=str_list, default=list(configs.CONFIGS), help="comma list of a,b,c")
    p.add_argument("--repeats", type=int, default=5, help="timed calls per point (median quoted)")
    p.add_argument("--steps", type=int_list, default=None,
                   help="steps per timed call: one value, or one per --num-envs (default: calibrated to --target-s)")
    p.add_argument("--target-s", type=float, default=0.5, help="calibrated duration of one timed call")
    p.add_argument("--chunk", type=int, default=32, help="steps per lax.scan (the program loops over chunks)")
    p.add_argument("--dtypes", type=str_list, default=["float32"], help="float32 and/or float64 (money dtype)")
    p.add_argument("--x64", action="store_true", help="also run float64 (jax.enable_x64): --dtypes float32,float64")
    p.add_argument("--no-obs", action="store_true", help="do not consume observations (XLA may drop the gather)")
    p.add_argument("--devices", type=int_list, default=[1],
                   help="comma list of local device counts to split the lanes over; on CPU each extra device is a "
                        "host device (one per core, via --xla_force_host_platform_device_count, set automatically)")
    p.add_argument("--baseline-s", type=float, default=3.0, help="wall budget of each Python baseline")
    p.add_argument("--processes", type=int, default=None, help="baseline pool size (default: usable cores)")
    p.add_argument("--no-baselines", action="store_true")
    p.add_argument("--memory", type=int_list, default=None, metavar="SIZES",
                   help="num_envs for the memory measurement (CPU: fresh subprocess each; GPU: start of doubling)")
    p.add_argument("--no-memory", action="store_true")
    p.add_argument("--deadline-s", type=float, default=None, help="skip remaining points after this many seconds")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: config a, 8 envs, 64 steps, 1 repeat, 0.2 s baselines, no memory")
    p.add_argument("--tag", default=None, help="file name stem (default env_throughput-<backend>)")
    p.add_argument("--out", default=DEFAULT_OUT, help="output folder (JSON + PNG)")
    p.add_argument("--no-plot", action="store_true")
    add_load_args(p)
    return p


def resolve(args) -> argparse.Namespace:
    if args.quick:
        defaults = build_parser().parse_args([])
        if args.num_envs == defaults.num_envs:
            args.num_envs = [8]
        if args.configs == defaults.configs:
            args.configs = ["a"]
        if args.steps is None:
            args.steps = [64]
        args.repeats = 1
        args.baseline_s = min(args.baseline_s, 0.2)
        args.no_memory = True
    if args.x64:
        args.dtypes = list(DTYPES)
    for d in args.dtypes:
        if d not in DTYPES:
            raise SystemExit(f"--dtypes: {d!r} is not one of {DTYPES}")
    for c in args.configs:
        configs.describe(c)
    if args.steps is not None and len(args.steps) not in (1, len(args.num_envs)):
        raise SystemExit("--steps: give one value, or one per --num-envs entry")
    return args


def run(args) -> dict:
    """Measure everything `args` asks for; returns the result dict (also written to JSON by `main`)."""
    t_start = time.perf_counter()
    enable_compilation_cache(args)
    load = check_load(args.allow_busy, "env_throughput")
    mem = None
    if not args.no_memory:  # first: on a GPU the device's peak-bytes counter only ever grows within a process
        mem = memory.measure(args.configs[0], sizes=args.memory)
    rows, skipped = [], []
    points = [(dtype, name, devices, i, n) for dtype in args.dtypes for name in args.configs
              for devices in args.devices for i, n in enumerate(args.num_envs) if n % devices == 0]
    for dtype, name, devices, i, n in points:
        if rows and args.deadline_s is not None and time.perf_counter() - t_start > args.deadline_s:
            skipped.append({"config": name, "dtype": dtype, "devices": devices, "num_envs": n, "why": "deadline"})
            continue
        steps = None if args.steps is None else args.steps[i if len(args.steps) > 1 else 0]
        row = measure(name, n, dtype=dtype, consume_obs=not args.no_obs, repeats=args.repeats,
                      target_s=args.target_s, chunk=args.chunk, steps=steps, devices=devices)
        rows.append(row)
        print(f"  {name} {dtype} devices={devices} num_envs={n:>8}: {row['steps_per_s']:.4g} steps/s "
              f"(compile {row['compile_s']:.2f} s, {row['num_steps']} steps in {row['median_s']:.3f} s)",
              file=sys.stderr, flush=True)
    base = []
    if not args.no_baselines:
        base = baselines.run_all(budget_s=args.baseline_s, processes=args.processes)
    return {
        "schema": SCHEMA,
        "kind": "env_throughput",
        "machine": machine_info(",".join(args.dtypes)),
        "load": load,
        "settings": {k: v for k, v in vars(args).items() if k not in ("out", "tag")},
        "observations": "not consumed (--no-obs)" if args.no_obs else
                        "consumed (each step's observation is carried to the next step, as a policy reads it)",
        "env": rows,
        "skipped": skipped,
        "baselines": base,
        "speedups": speedups(rows, base),
        "memory": mem,
        "reference_published": REFERENCE_PUBLISHED,
        "wall_s": time.perf_counter() - t_start,
    }


def use_host_devices(count: int) -> None:
    """Ask XLA:CPU for `count` host devices. Only works before JAX starts its backend."""
    flag = "--xla_force_host_platform_device_count"
    if count > 1 and flag not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {flag}={count}".strip()


def main(argv: list[str] | None = None) -> dict:
    args = resolve(build_parser().parse_args(argv))
    use_host_devices(max(args.devices))
    if len(jax.devices()) < max(args.devices):
        raise SystemExit(f"--devices {max(args.devices)}: only {len(jax.devices())} local devices (on CPU, set "
                         f"XLA_FLAGS=--xla_force_host_platform_device_count=N before starting Python)")
    result = run(args)
    stem = args.tag or f"env_throughput-{result['machine']['backend']}"
    path = write_json(os.path.join(args.out, stem + ".json"), result)
    print(report.env_markdown(result))
    if not args.no_plot:
        png = report.plot_env([result], os.path.join(args.out, stem + ".png"))
        print(f"\nwrote {path} and {png}")
    else:
        print(f"\nwrote {path}")
    return result


if __name__ == "__main__":
    main()

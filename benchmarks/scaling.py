"""PPO throughput against the device count: the trainer's data-parallel program on 1, 2, 4 devices.

    python -m benchmarks.scaling                                   # --devices 1,2,4 --num-envs 256
    python -m benchmarks.scaling --devices 1,2,4 --num-envs 64,256 --iterations 3 --out /tmp/bench

Each device count runs in a fresh Python process (the device count is fixed when JAX starts): on CPU with
`XLA_FLAGS=--xla_force_host_platform_device_count=N`, i.e. N *fake* devices that share the machine's cores,
so the numbers show the cost of the sharded program (collectives, resharding), not a speed-up: nothing is
asserted. On a machine with N accelerators the same command measures real data parallelism (the flag only
adds host devices, which the trainer does not use there).

Per point: `benchmarks.ppo_throughput.measure(num_envs, devices=N)` (the reference's model and schedule,
`--steps-per-env` steps per env per iteration, median of `--iterations` after a warm-up): frames/s of the
whole jitted iteration (total), of the collect-only program (collect), and their difference (update).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from benchmarks import report
from benchmarks.common import (
    DEFAULT_OUT,
    SCHEMA,
    add_load_args,
    check_load,
    enable_compilation_cache,
    int_list,
    write_json,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.scaling", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--devices", type=int_list, default=[1, 2, 4], help="device counts, each in a fresh process")
    p.add_argument("--num-envs", type=int_list, default=[256], help="global num_envs (a multiple of each count)")
    p.add_argument("--iterations", type=int, default=3, help="timed iterations (and collect calls) per point")
    p.add_argument("--steps-per-env", type=int, default=20)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--minibatches", type=int, default=3)
    p.add_argument("--timeout-s", type=float, default=900, help="per device count")
    p.add_argument("--tag", default=None, help="file name stem (default scaling-<backend>)")
    p.add_argument("--out", default=DEFAULT_OUT)
    p.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)  # internal: one device count
    p.add_argument("--child-out", default=None, help=argparse.SUPPRESS)
    add_load_args(p)
    return p


def _child(args) -> None:
    """Inside the fresh process: every num_envs point on `args.child` devices, as JSON."""
    import jax

    from benchmarks.common import machine_info
    from benchmarks.ppo_throughput import measure

    if jax.local_device_count() < args.child:
        raise SystemExit(f"--devices {args.child}: only {jax.local_device_count()} local devices")
    rows = []
    for n in args.num_envs:
        if n % args.child:
            rows.append({"num_envs": n, "devices": args.child, "skipped": f"num_envs not a multiple of {args.child}"})
            continue
        row = measure(n, devices=args.child, steps_per_env=args.steps_per_env, iterations=args.iterations,
                      hidden=args.hidden, layers=args.layers, epochs=args.epochs, minibatches=args.minibatches)
        rows.append(row)
        print(f"  devices={args.child} num_envs={n:>6}: total {row['total_fps']:.4g} fps, collect "
              f"{row['collect_fps']:.4g} fps (compile {row['compile_iteration_s']:.1f} s)", file=sys.stderr, flush=True)
    with open(args.child_out, "w") as fh:
        json.dump({"machine": machine_info("float32"), "rows": rows}, fh)


def run(args) -> dict:
    t0 = time.perf_counter()
    enable_compilation_cache(args)
    load = check_load(args.allow_busy, "scaling")
    rows, machine, failures = [], None, []
    for d in args.devices:
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "child.json")
            env = dict(os.environ)
            flag = f"--xla_force_host_platform_device_count={d}"
            env["XLA_FLAGS"] = " ".join(
                [f for f in env.get("XLA_FLAGS", "").split() if "force_host_platform_device_count" not in f] + [flag]
            )
            cmd = [sys.executable, "-m", "benchmarks.scaling", "--child", str(d), "--child-out", out,
                   "--num-envs", ",".join(map(str, args.num_envs)), "--iterations", str(args.iterations),
                   "--steps-per-env", str(args.steps_per_env), "--hidden", str(args.hidden), "--layers",
                   str(args.layers), "--epochs", str(args.epochs), "--minibatches", str(args.minibatches)]
            proc = subprocess.run(cmd, cwd=ROOT, env=env, timeout=args.timeout_s)
            if proc.returncode != 0 or not os.path.isfile(out):
                failures.append({"devices": d, "returncode": proc.returncode})
                continue
            with open(out) as fh:
                child = json.load(fh)
        machine = machine or child["machine"]
        rows += child["rows"]
    settings = {k: v for k, v in vars(args).items() if k not in ("out", "tag", "child", "child_out")}
    return {"schema": SCHEMA, "kind": "ppo_scaling", "machine": machine, "load": load, "settings": settings,
            "rows": rows, "failures": failures, "wall_s": time.perf_counter() - t0}


def main(argv: list[str] | None = None) -> dict | None:
    args = build_parser().parse_args(argv)
    if args.child is not None:
        _child(args)
        return None
    result = run(args)
    backend = (result["machine"] or {}).get("backend", "unknown")
    path = write_json(os.path.join(args.out, (args.tag or f"scaling-{backend}") + ".json"), result)
    print(report.scaling_markdown(result))
    print(f"\nwrote {path}")
    return result


if __name__ == "__main__":
    main()

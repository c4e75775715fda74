"""trading_jax against TorchTrade 0.1.0, side by side in one run, on the same data and config.

    pip install -e ".[compare]"                                # torchtrade==0.1.0 and CPU torch
    python -m benchmarks.vs_torchtrade                         # env at 64, 256, 1024 envs; PPO at 64 x 100
    python -m benchmarks.vs_torchtrade --quick --allow-busy    # plumbing check at tiny sizes

1. env steps/s, random actions, the reference example's env (bundled BTC/USDT 1-minute sample, 1Hour frame,
   window 24, executed hourly, L=3, levels -1/0/1, fee 0.001, slippage 0.01, cash 1000, random start, raw
   OHLCV features, no length limit): TorchTrade's `VectorizedSequentialTradingEnv` through TorchRL's
   `step_and_maybe_reset`, against ours (`benchmarks.env_throughput.measure`, config a: one jitted program,
   observations consumed) on 1 and 2 devices (host devices on CPU, one per core).
2. PPO frames/s at the reference example's shape (64 envs x 100 steps = 6,400 frames per batch, 3 epochs x
   3 minibatches of 2,133, BatchNorm MLP 4x128 with dropout 0.1, Adam lr 2.5e-4 eps 1e-6, clip-grad 0.5, GAE
   gamma 0.9 lambda 0.95, clip 0.1, entropy 0.01, advantages recomputed every epoch): TorchRL's loop as the
   `ppo_vectorized` example builds it (`benchmarks/torchtrade_ref.py`), against `train.loop.train` (what
   `python -m train.ppo` runs; evaluation, checkpoints and logging off on both sides), on the training split
   (before 2024-05-28) with the example's per-split z-score features on both sides. Both: `--iterations`
   iterations, the first `--warmup` not timed; frames/s = frames per batch / median iteration, and end to end
   over the timed iterations. Compile (ours) and setup + warm-up (theirs) are reported apart.

Prints the table with the ratios (ours / TorchTrade), and writes `<out>/<tag>.json`, `.md` and `.png`
(default tag `vs_torchtrade-<backend>`). A busy machine is refused unless `--allow-busy`; each figure records
the CPU other processes used while it ran, and a result with any busy figure is marked not comparable.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import time

from benchmarks import torchtrade_ref
from benchmarks.common import (
    DEFAULT_OUT,
    SCHEMA,
    LoadMeter,
    add_load_args,
    check_load,
    enable_compilation_cache,
    int_list,
    machine_info,
    median,
    write_result,
)

REFERENCE_SHAPE = dict(num_envs=64, steps=100, epochs=3, minibatches=3, hidden=128, layers=4, dropout=0.1)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.vs_torchtrade", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env-num-envs", type=int_list, default=[64, 256, 1024], help="env sizes of part 1")
    p.add_argument("--target-s", type=float, default=1.0, help="duration of each timed env run")
    p.add_argument("--repeats", type=int, default=3, help="timed env runs per point (median quoted)")
    p.add_argument("--devices", type=int_list, default=[1, 2],
                   help="our device counts (on CPU host devices, one per core; set automatically)")
    p.add_argument("--num-envs", type=int, default=REFERENCE_SHAPE["num_envs"], help="PPO envs")
    p.add_argument("--steps-per-env", type=int, default=REFERENCE_SHAPE["steps"], help="PPO steps per env per batch")
    p.add_argument("--epochs", type=int, default=REFERENCE_SHAPE["epochs"])
    p.add_argument("--minibatches", type=int, default=REFERENCE_SHAPE["minibatches"])
    p.add_argument("--hidden", type=int, default=REFERENCE_SHAPE["hidden"])
    p.add_argument("--layers", type=int, default=REFERENCE_SHAPE["layers"])
    p.add_argument("--iterations", type=int, default=6, help="PPO iterations per side, warm-up included")
    p.add_argument("--warmup", type=int, default=1, help="PPO iterations not timed")
    p.add_argument("--torch-threads", type=int, default=None, help="torch.set_num_threads (default: torch's own)")
    p.add_argument("--no-env", action="store_true", help="skip part 1")
    p.add_argument("--no-ppo", action="store_true", help="skip part 2")
    p.add_argument("--quick", action="store_true",
                   help="plumbing check: env 16 envs, PPO 16 x 10 with hidden 32 x 1 layer, 3 iterations, 1 device")
    p.add_argument("--tag", default=None, help="file name stem (default vs_torchtrade-<backend>)")
    p.add_argument("--out", default=DEFAULT_OUT)
    p.add_argument("--no-plot", action="store_true")
    add_load_args(p)
    return p


def resolve(args) -> argparse.Namespace:
    if args.quick:
        args.env_num_envs, args.target_s, args.repeats, args.devices = [16], 0.1, 1, [1]
        args.num_envs, args.steps_per_env, args.hidden, args.layers, args.iterations = 16, 10, 32, 1, 3
    if args.iterations <= args.warmup:
        raise SystemExit(f"--iterations ({args.iterations}) must exceed --warmup ({args.warmup})")
    return args


# --------------------------------------------------------------------------------------- trainer config
def trainer_cfg(args, devices: int, run_dir: str):
    """Our trainer's config at the comparison shape (the example's per-split z-score features)."""
    from train.config import load_config

    F = args.num_envs * args.steps_per_env
    return load_config([
        f"env.num_envs={args.num_envs}", f"collector.frames_per_batch={F}",
        f"collector.total_frames={F * args.iterations}", f"loss.mini_batch_size={F // args.minibatches}",
        f"loss.ppo_epochs={args.epochs}", f"model.hidden_size={args.hidden}", f"model.num_layers={args.layers}",
        "env.features=zscore_split", f"parallel.devices={devices}", "logger.backend=none", "logger.progress=false",
        "logger.timing_interval=1", f"logger.run_dir={run_dir}", "eval.enabled=false", "checkpoint.enabled=false",
    ])


def reference_shape(args, cfg) -> dict:
    """The PPO shape and hyper-parameters for the TorchRL loop, read from our trainer config."""
    return dict(num_envs=args.num_envs, steps=args.steps_per_env, epochs=args.epochs, minibatches=args.minibatches,
                hidden=args.hidden, layers=args.layers, dropout=float(cfg.model.dropout), lr=float(cfg.optim.lr),
                eps=float(cfg.optim.eps), max_grad_norm=float(cfg.optim.max_grad_norm), gamma=float(cfg.loss.gamma),
                lam=float(cfg.loss.gae_lambda), clip=float(cfg.loss.clip_epsilon),
                entropy=float(cfg.loss.entropy_coeff), critic=float(cfg.loss.critic_coeff),
                iterations=args.iterations)


def env_kwargs_of(cfg) -> dict:
    """The env settings both sides share, as plain values."""
    from omegaconf import OmegaConf

    e = OmegaConf.to_container(cfg.env, resolve=True)
    keys = ("time_frames", "window_sizes", "execute_on", "initial_cash", "transaction_fee", "slippage", "leverage",
            "action_levels", "bankrupt_threshold", "random_start")
    return {k: e[k] for k in keys}


# --------------------------------------------------------------------------------------- the two sides
def ours_ppo(args, devices: int) -> dict:
    """`train.loop.train` at the comparison shape: per-iteration wall times from its metrics.jsonl."""
    from train.loggers import read_metrics
    from train.loop import train

    with tempfile.TemporaryDirectory() as run_dir:
        cfg = trainer_cfg(args, devices, run_dir)
        t0 = time.perf_counter()
        with LoadMeter() as meter:
            result = train(cfg)
        wall = time.perf_counter() - t0
        records = [r for r in read_metrics(run_dir) if "time/SPS-total" in r]
    F = args.num_envs * args.steps_per_env
    timed = records[args.warmup:]
    it_times = [F / r["time/SPS-total"] for r in timed]
    collect = [r["time/SPS-collecting"] for r in timed if "time/SPS-collecting" in r]
    return {"devices": devices, "frames_per_iteration": F, "compile_s": result.metrics.get("time/compile"),
            "wall_s": wall, "iteration_times_s": it_times, "total_fps": F / median(it_times),
            "end_to_end_fps": F * len(it_times) / sum(it_times), "collect_fps": median(collect) if collect else None,
            "load": meter.result}


def ppo_part(args) -> dict:
    from trading_jax.features import zscore_ohlcv
    from train.data import load_frame, split_frame

    with tempfile.TemporaryDirectory() as tmp:
        cfg = trainer_cfg(args, 1, tmp)
    frame, _ = split_frame(load_frame(cfg), cfg.env.test_split_start)
    shape = reference_shape(args, cfg)
    print(f"vs_torchtrade: PPO {shape['num_envs']} envs x {shape['steps']} steps, TorchRL loop", file=sys.stderr,
          flush=True)
    theirs = torchtrade_ref.ppo_frames_per_s(frame, shape, env_kwargs_of(cfg), zscore_ohlcv, warmup=args.warmup)
    ours = []
    for d in args.devices:
        print(f"vs_torchtrade: PPO, train.loop.train on {d} device(s)", file=sys.stderr, flush=True)
        ours.append(ours_ppo(args, d))
    return {"shape": shape, "env": env_kwargs_of(cfg), "features": "zscore_split (the example's per-split z-score)",
            "data": f"bundled BTC/USDT 1-minute sample before {cfg.env.test_split_start}", "torchtrade": theirs,
            "ours": ours, "ratios": {str(o["devices"]): o["total_fps"] / theirs["total_fps"] for o in ours}}


def env_part(args) -> dict:
    from benchmarks import configs
    from benchmarks.env_throughput import measure
    from trading_jax.datasets import btcusdt_1m_sample

    kwargs = dict(zip(("time_frames", "window_sizes", "execute_on"), configs.MARKETS["a"], strict=True),
                  **configs.MONEY)
    frame = btcusdt_1m_sample()
    rows = []
    for n in args.env_num_envs:
        theirs = torchtrade_ref.env_steps_per_s(frame, n, kwargs, target_s=args.target_s, repeats=args.repeats)
        row = {"num_envs": n, "torchtrade": theirs, "ours": []}
        for d in (d for d in args.devices if n % d == 0):
            row["ours"].append(measure("a", n, repeats=args.repeats, target_s=args.target_s, devices=d))
        row["ratios"] = {str(o["devices"]): o["steps_per_s"] / theirs["steps_per_s"] for o in row["ours"]}
        rows.append(row)
        ratios = ", ".join(f"{d} device(s) {r:.1f}x" for d, r in row["ratios"].items())
        print(f"  env {n:>5} envs: TorchTrade {theirs['steps_per_s']:.4g} steps/s; ours / TorchTrade: {ratios}",
              file=sys.stderr, flush=True)
    return {"config": configs.describe("a"), "env": kwargs, "rows": rows}


def all_loads(result: dict) -> list[dict]:
    """Every figure's load record in a result."""
    loads = []
    for row in (result.get("env") or {}).get("rows", []):
        loads += [row["torchtrade"]["load"]] + [o["load"] for o in row["ours"]]
    ppo = result.get("ppo")
    if ppo:
        loads += [ppo["torchtrade"]["load"]] + [o["load"] for o in ppo["ours"]]
    return [x for x in loads if x]


def run(args, command: str) -> dict:
    versions = torchtrade_ref.require_torch()
    threads = torchtrade_ref.set_threads(args.torch_threads)
    from benchmarks.env_throughput import use_host_devices

    use_host_devices(max(args.devices))
    import jax

    if len(jax.devices()) < max(args.devices):
        raise SystemExit(f"--devices {max(args.devices)}: only {len(jax.devices())} local devices")
    t0 = time.perf_counter()
    enable_compilation_cache(args)
    load = check_load(args.allow_busy, "vs_torchtrade")
    result = {"schema": SCHEMA, "kind": "vs_torchtrade", "command": command, "machine": machine_info("float32"),
              "load": load, "versions": dict(versions, jax=jax.__version__), "torch_threads": threads,
              "settings": {k: v for k, v in vars(args).items() if k not in ("out", "tag")},
              "env": None if args.no_env else env_part(args), "ppo": None if args.no_ppo else ppo_part(args)}
    busy = [x for x in all_loads(result) if x["busy"]] + ([load] if load["busy"] else [])
    result["comparable"] = not busy
    result["wall_s"] = time.perf_counter() - t0
    return result


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = resolve(build_parser().parse_args(argv))
    from benchmarks import vs_report

    result = run(args, shlex.join(["python", "-m", "benchmarks.vs_torchtrade", *argv]))
    stem = args.tag or f"vs_torchtrade-{result['machine']['backend']}"
    text = vs_report.markdown(result)
    print(text)
    wrote = write_result(args.out, stem, result, text)
    if not args.no_plot:
        wrote.append(vs_report.plot(result, os.path.join(args.out, stem + ".png")))
    if not result["comparable"]:
        print("\nWARNING: figures were measured on a BUSY machine (see 'other CPU'): not comparable.", file=sys.stderr)
    print("\nwrote " + ", ".join(wrote))
    return result


if __name__ == "__main__":
    main()

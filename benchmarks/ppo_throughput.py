"""PPO throughput: frames/s of collection, update and whole iterations against num_envs.

    python -m benchmarks.ppo_throughput                              # num_envs 64,256,1024,4096
    python -m benchmarks.ppo_throughput --num-envs 64 --iterations 3 --out /tmp/bench

The trainer is `train.ppo.make_train` with the reference's model and schedule: BatchNorm MLP hidden 128 x 4
layers, 3 epochs x 3 minibatches, `--steps-per-env` (default 20 = the reference's 1280 frames / 64 envs)
steps per env per iteration, so frames per iteration = num_envs x 20. Env: the trainer's default (bundled
BTC sample, 1Hour w24, L3, z-scored features).

* total: the jitted iteration (collect + GAE + update), blocked on its metrics (the trainer's one host sync
  per iteration); median over `--iterations` after a warm-up iteration.
* collect: the trainer's collect-only jitted program (`TrainFns.collect`) on the current state; median of
  `--iterations` calls.
* update: total - collect (collection and update are one XLA program; this is their difference).
Compile time (`lower().compile()` of both programs) is reported apart. Evaluation, checkpoints and logging
of `python -m train.ppo` are not included.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax

from benchmarks import report
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
    time_call,
    write_json,
)

DEFAULT_NUM_ENVS = (64, 256, 1024, 4096)


def trainer_config(num_envs: int, steps_per_env: int = 20, iterations: int = 5, hidden: int = 128,
                   layers: int = 4, epochs: int = 3, minibatches: int = 3, extra=()):
    """The trainer config of one benchmark point (logging, evaluation and checkpoints off)."""
    from train.config import load_config

    frames = num_envs * steps_per_env
    return load_config([
        f"env.num_envs={num_envs}", f"collector.frames_per_batch={frames}",
        f"collector.total_frames={frames * (iterations + 1)}", f"loss.mini_batch_size={frames // minibatches}",
        f"loss.ppo_epochs={epochs}", f"model.hidden_size={hidden}", f"model.num_layers={layers}",
        "logger.backend=none", "logger.progress=false", "eval.enabled=false", "checkpoint.enabled=false",
        *extra,
    ])


def measure(num_envs: int, *, steps_per_env: int = 20, iterations: int = 5, hidden: int = 128, layers: int = 4,
            epochs: int = 3, minibatches: int = 3, setup=None, seed: int = 0, devices: int = 1,
            num_seeds: int = 1) -> dict:
    """One num_envs point: compile both programs, warm up, then median iteration and collect times.
    `num_seeds=K`: K agents in one program (frames/s count every agent's frames).

    `devices > 1`: the trainer's data-parallel program over the first `devices` local devices (envs sharded,
    `parallel.devices=N`); see benchmarks/scaling.py for 1, 2, 4 fake CPU devices."""
    from train import parallel
    from train.config import num_minibatches
    from train.data import build_setup
    from train.ppo import make_train

    cfg = trainer_config(num_envs, steps_per_env, iterations, hidden, layers, epochs, minibatches,
                         extra=(f"parallel.devices={devices}", f"num_seeds={num_seeds}"))
    setup = setup or build_setup(cfg)
    fns = make_train(cfg, setup.train.env, parallel.make_mesh(cfg))
    params, keys = fns.place_inputs(setup.train.params, jax.random.split(jax.random.PRNGKey(seed), num_seeds))
    runner = fns.init(params, keys)
    iteration, compile_it = compile_timed(fns.iteration, params, runner)
    collect, compile_col = compile_timed(fns.collect, params, runner)

    def one_iteration(runner):
        runner, metrics = iteration(params, runner)
        return runner, jax.device_get(metrics)

    runner, _ = one_iteration(runner)  # warm-up
    time_call(collect, params, runner)
    it_times = []
    with LoadMeter() as meter:
        for _ in range(iterations):
            t0 = time.perf_counter()
            runner, _ = one_iteration(runner)
            it_times.append(time.perf_counter() - t0)
        col_times = [time_call(collect, params, runner)[1] for _ in range(iterations)]
    F = fns.frames_per_iteration * num_seeds
    t_it, t_col = median(it_times), median(col_times)
    t_upd = max(t_it - t_col, 1e-9)
    return {
        "num_envs": num_envs, "num_seeds": num_seeds, "devices": devices, "steps_per_env": steps_per_env,
        "frames_per_iteration": F,
        "minibatches": int(num_minibatches(cfg)), "mini_batch_size": int(cfg.loss.mini_batch_size),
        "compile_iteration_s": compile_it, "compile_collect_s": compile_col,
        "iteration_times_s": it_times, "collect_times_s": col_times,
        "iteration_s": t_it, "collect_s": t_col, "update_s": t_upd,
        "collect_fps": F / t_col, "update_fps": F / t_upd, "total_fps": F / t_it, "load": meter.result,
    }


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.ppo_throughput", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num-envs", type=int_list, default=list(DEFAULT_NUM_ENVS))
    p.add_argument("--iterations", type=int, default=5, help="timed iterations (and collect calls) per size")
    p.add_argument("--steps-per-env", type=int, default=20, help="steps per env per iteration")
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--minibatches", type=int, default=3)
    p.add_argument("--num-seeds", type=int, default=1, help="agents per program (num_seeds); fps counts all")
    p.add_argument("--deadline-s", type=float, default=None, help="skip remaining sizes after this many seconds")
    p.add_argument("--tag", default=None, help="file name stem (default ppo_throughput-<backend>)")
    p.add_argument("--out", default=DEFAULT_OUT)
    p.add_argument("--no-plot", action="store_true")
    add_load_args(p)
    return p


def run(args) -> dict:
    t_start = time.perf_counter()
    enable_compilation_cache(args)
    load = check_load(args.allow_busy, "ppo_throughput")
    rows, skipped = [], []
    for n in args.num_envs:
        if rows and args.deadline_s is not None and time.perf_counter() - t_start > args.deadline_s:
            skipped.append({"num_envs": n, "why": "deadline"})
            continue
        row = measure(n, steps_per_env=args.steps_per_env, iterations=args.iterations, hidden=args.hidden,
                      layers=args.layers, epochs=args.epochs, minibatches=args.minibatches, num_seeds=args.num_seeds)
        rows.append(row)
        print(f"  ppo num_envs={n:>7}: total {row['total_fps']:.4g} fps, collect {row['collect_fps']:.4g} fps, "
              f"update {row['update_fps']:.4g} fps (compile {row['compile_iteration_s']:.1f} + "
              f"{row['compile_collect_s']:.1f} s)", file=sys.stderr, flush=True)
    settings = {k: v for k, v in vars(args).items() if k not in ("out", "tag")}
    settings.update(hidden_size=args.hidden, num_layers=args.layers)
    return {
        "schema": SCHEMA, "kind": "ppo_throughput", "machine": machine_info("float32"), "load": load,
        "settings": settings,
        "ppo": rows, "skipped": skipped, "reference_published": REFERENCE_PUBLISHED,
        "wall_s": time.perf_counter() - t_start,
    }


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    result = run(args)
    stem = args.tag or f"ppo_throughput-{result['machine']['backend']}"
    path = write_json(os.path.join(args.out, stem + ".json"), result)
    print(report.ppo_markdown(result))
    if not args.no_plot and result["ppo"]:
        print(f"\nwrote {path} and {report.plot_ppo([result], os.path.join(args.out, stem + '.png'))}")
    else:
        print(f"\nwrote {path}")
    return result


if __name__ == "__main__":
    main()

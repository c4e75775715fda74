"""Where one PPO iteration's time goes: per-phase timings, the network-only ceiling, a jax.profiler trace.

    python -m benchmarks.profile_iteration                         # reference shape 64x100 and CPU default 64x20
    python -m benchmarks.profile_iteration --shapes 64x100 --trace /tmp/ppo-trace
    python -m benchmarks.profile_iteration --quick --allow-busy    # smoke run at a tiny shape

For each shape (num_envs x steps per env; 3 epochs x 3 minibatches, the 4x128 BatchNorm MLP with dropout
0.1, the trainer's defaults otherwise):

* iteration: `train.ppo.make_train`'s jitted iteration, blocked; and with its metrics fetched to the host
  (what the trainer's loop does every iteration);
* phases, each its own jitted program (`benchmarks/iteration_pieces.py`), times the calls per iteration:
  collection (`make_train`'s collect), GAE (values + GAE, every epoch when advantages are recomputed),
  minibatch gather, forward/backward, optimiser, metrics (reductions + host fetch), and the host loop
  (`train.loop.train`'s wall time per iteration minus the blocked iteration);
* network-only cost of each phase from the `ActorCritic` alone (training mode, BatchNorm and dropout):
  collection = steps x forward(num_envs) + the env alone; GAE = passes x forward(batch); forward/backward =
  updates x trunk passes x forward+backward(minibatch). Ratio = phase / its network-only cost.
* the ceiling table: forward+backward and forward-only samples/s at batch 64, 426, 2133, 6826 (and the shapes'
  own batches), plus forward+backward vmapped over a size-1 seed axis (as `make_train` runs it).

Every figure carries the CPU that other processes used while it was measured (`benchmarks.common.LoadMeter`);
a busy machine is refused unless `--allow-busy`, and its figures are marked. Writes
`<out>/<tag>.json` and `<out>/<tag>.md` (default tag `profile_iteration-<backend>`), with this command line.
`--trace DIR` also records a `jax.profiler` trace of two iterations and one call of each phase.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import time

import jax

from benchmarks import iteration_pieces, profile_report, trace_summary
from benchmarks.common import (
    DEFAULT_OUT,
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
    time_repeats,
    write_result,
)

DEFAULT_SHAPES = "64x100,64x20"
CEILING_BATCHES = (64, 426, 2133, 6826)


def shape_list(text: str) -> list[tuple[int, int]]:
    """`"64x100,64x20"` -> `[(64, 100), (64, 20)]` (num_envs x steps per env)."""
    out = []
    for part in str(text).split(","):
        try:
            n, t = (int(x) for x in part.strip().lower().split("x"))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected NUM_ENVSxSTEPS, e.g. 64x100, got {part!r}") from None
        if n < 1 or t < 1:
            raise argparse.ArgumentTypeError(f"num_envs and steps must be >= 1, got {part!r}")
        out.append((n, t))
    return out


# --------------------------------------------------------------------------------------- timing
def timed(fn, args, repeats: int, fetch: bool = False) -> dict:
    """Compile `fn` (jitted) on `args`, one warm-up call, then `repeats` blocked calls under a `LoadMeter`."""
    compiled, compile_s = compile_timed(fn, *args)
    call = (lambda *a: jax.device_get(compiled(*a))) if fetch else compiled
    time_call(call, *args)
    with LoadMeter() as meter:
        times = time_repeats(call, *args, repeats=repeats)
    return {"compile_s": compile_s, "times_s": times, "median_s": median(times), "load": meter.result}


def time_iteration(compiled, env_params, runner, repeats: int, fetch: bool) -> tuple[dict, object]:
    """The trainer's iteration, chained (each call gets the previous runner, so buffer donation is fine)."""
    runner, _ = jax.block_until_ready(compiled(env_params, runner))  # warm-up
    times = []
    with LoadMeter() as meter:
        for _ in range(max(repeats, 1)):
            t0 = time.perf_counter()
            runner, metrics = compiled(env_params, runner)
            jax.device_get(metrics) if fetch else jax.block_until_ready((runner, metrics))
            times.append(time.perf_counter() - t0)
    return {"times_s": times, "median_s": median(times), "load": meter.result}, runner


def host_loop(cfg, setup, fns, run_dir: str) -> dict:
    """`train.loop.train` on the same (already compiled) programs: its wall time per iteration."""
    from train.loggers import read_metrics
    from train.loop import train

    with LoadMeter() as meter:
        train(cfg, setup=setup, fns=fns)
    sps = [r["time/SPS-total"] for r in read_metrics(run_dir) if "time/SPS-total" in r]
    times = [fns.frames_per_iteration / x for x in sps[1:] or sps]  # the first iteration warms up
    return {"times_s": times, "median_s": median(times), "load": meter.result}


# --------------------------------------------------------------------------------------- one shape
def build(num_envs: int, steps: int, args, run_dir: str):
    from benchmarks.ppo_throughput import trainer_config
    from train import parallel
    from train.data import build_setup
    from train.ppo import make_train

    cfg = trainer_config(num_envs, steps, args.iterations, args.hidden, args.layers, args.epochs, args.minibatches,
                         extra=("parallel.devices=1", "logger.timing_interval=0", f"logger.run_dir={run_dir}"))
    setup = build_setup(cfg)
    fns = make_train(cfg, setup.train.env, parallel.make_mesh(cfg))
    return cfg, setup, fns


def measure_shape(num_envs: int, steps: int, args, ceiling: dict) -> tuple:
    """`(network, result)`: every phase of one shape, its network-only cost (from `ceiling`, filled on demand)
    and the iteration."""
    from benchmarks.programs import make_program
    from train.loop import compile_ahead

    with tempfile.TemporaryDirectory() as run_dir:
        cfg, setup, fns = build(num_envs, steps, args, run_dir)
        env_params = setup.train.params
        keys = jax.random.split(jax.random.PRNGKey(int(cfg.seed)), int(cfg.num_seeds))
        runner = fns.init(env_params, keys)
        t0 = time.perf_counter()
        iteration = compile_ahead(fns.iteration, env_params, runner, cache=fns.compiled)
        compile_it = time.perf_counter() - t0
        blocked, runner = time_iteration(iteration, env_params, runner, args.repeats, fetch=False)
        fetched, runner = time_iteration(iteration, env_params, runner, args.repeats, fetch=True)
        collect = timed(fns.collect, (env_params, runner), args.repeats)
        pieces = iteration_pieces.make_pieces(cfg, fns.network, setup.obs_dim)
        _, traj = fns.collect(env_params, runner)
        seeded = traj.reward.ndim == 3
        state = iteration_pieces.unseeded(runner.train, seeded)
        inputs = iteration_pieces.piece_inputs(pieces, state, iteration_pieces.unseeded(traj, seeded),
                                               jax.random.PRNGKey(1))
        s = pieces.shape
        calls = {"gae": s.gae_calls, "gather": s.epochs, "fwd_bwd": s.updates, "optimizer": s.updates, "metrics": 1}
        phases = {"collection": dict(collect, calls=1)}
        for name, n in calls.items():
            phases[name] = dict(timed(getattr(pieces, name), inputs[name], args.repeats, fetch=name == "metrics"),
                                calls=n)
        env_only = timed(make_program(setup.train.env, num_envs, steps), (env_params, jax.random.PRNGKey(2), 1),
                         args.repeats)
        loop = host_loop(cfg, setup, fns, run_dir)
        trace = record_trace(args.trace, iteration, env_params, runner, pieces, inputs) if args.trace else None
    for b in (num_envs, s.gae_batch, s.mb_size):
        ceiling_point(fns.network, b, setup.obs_dim, args, ceiling)
    phases["host_loop"] = {"median_s": loop["median_s"] - blocked["median_s"], "calls": 1, "load": loop["load"],
                           "times_s": loop["times_s"]}
    return fns.network, {
        "num_envs": num_envs, "steps_per_env": steps, "frames_per_iteration": s.frames, "shape": vars(s),
        "compile_iteration_s": compile_it, "iteration": blocked, "iteration_with_metrics_fetch": fetched,
        "train_loop_iteration": loop, "env_only": env_only, "phases": phases,
        "network_only_s": network_only(s, ceiling, env_only["median_s"]), "trace": trace,
    }


def network_only(s, ceiling: dict, env_s: float) -> dict:
    """Seconds per iteration that each phase's network work takes in the network-only programs."""
    fwd = lambda b: b / ceiling[b]["forward_sps"]
    collection_network = s.steps * fwd(s.num_envs)
    return {
        "collection": collection_network + env_s,
        "collection_network": collection_network,
        "collection_env": env_s,
        "gae": s.gae_calls * s.gae_passes * fwd(s.gae_batch),
        "fwd_bwd": s.updates * s.trunk_passes * s.mb_size / ceiling[s.mb_size]["forward_backward_sps"],
    }


def ceiling_point(network, batch: int, obs_dim: int, args, ceiling: dict) -> None:
    """Forward and forward+backward samples/s of the network alone at `batch` (once per batch), and
    forward+backward vmapped over a size-1 seed axis."""
    if batch in ceiling:
        return
    fwd, fwd_bwd, inputs, samples = iteration_pieces.network_programs(network, batch, obs_dim, jax.random.PRNGKey(3))
    _, fwd_bwd_v, inputs_v, _ = iteration_pieces.network_programs(network, batch, obs_dim, jax.random.PRNGKey(3),
                                                                   vmap_seed=True)
    row = {"batch": batch, "samples_per_call": samples}
    for name, fn, xs in (("forward", fwd, inputs), ("forward_backward", fwd_bwd, inputs),
                         ("forward_backward_seed_vmap", fwd_bwd_v, inputs_v)):
        t = timed(fn, xs, args.repeats)
        row[name + "_sps"] = samples / t["median_s"]
        row[name + "_load"] = t["load"]
    ceiling[batch] = row
    print(f"  network alone, batch {batch:>6}: forward+backward {row['forward_backward_sps']:.4g}/s, forward "
          f"{row['forward_sps']:.4g}/s, forward+backward seed-vmapped {row['forward_backward_seed_vmap_sps']:.4g}/s",
          file=sys.stderr, flush=True)


def record_trace(trace_dir: str, iteration, env_params, runner, pieces, inputs) -> dict | None:
    """A `jax.profiler` trace: two iterations and one call of each phase program, each annotated; returns the
    XLA thunk time of the second (warm) iteration by instruction (`benchmarks.trace_summary`)."""
    os.makedirs(trace_dir, exist_ok=True)
    with jax.profiler.trace(trace_dir):
        for i in range(2):
            with jax.profiler.TraceAnnotation(f"iteration {i}"):
                runner, metrics = iteration(env_params, runner)
                jax.device_get(metrics)
        for name in ("gae", "gather", "fwd_bwd", "optimizer", "metrics"):
            with jax.profiler.TraceAnnotation(name):
                jax.block_until_ready(getattr(pieces, name)(*inputs[name]))
    path = trace_summary.latest_trace(trace_dir)
    return trace_summary.summarize(path, "iteration 1") if path else None


# --------------------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.profile_iteration", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shapes", type=shape_list, default=shape_list(DEFAULT_SHAPES),
                   help=f"NUM_ENVSxSTEPS per env, comma-separated (default {DEFAULT_SHAPES})")
    p.add_argument("--repeats", type=int, default=5, help="timed calls per figure (median quoted)")
    p.add_argument("--iterations", type=int, default=5, help="iterations of the host-loop run (train.loop.train)")
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--minibatches", type=int, default=3)
    p.add_argument("--ceiling-batches", type=int_list, default=list(CEILING_BATCHES),
                   help="batches of the network-only table (the shapes' own batches are added)")
    p.add_argument("--trace", metavar="DIR", default=None, help="also write a jax.profiler trace of the first shape")
    p.add_argument("--quick", action="store_true", help="smoke run: shape 16x8, hidden 16 x 1 layer, 1 repeat")
    p.add_argument("--tag", default=None, help="file name stem (default profile_iteration-<backend>)")
    p.add_argument("--out", default=DEFAULT_OUT)
    add_load_args(p)
    return p


def resolve(args) -> argparse.Namespace:
    if args.quick:
        args.shapes, args.hidden, args.layers, args.repeats, args.iterations = [(16, 8)], 16, 1, 1, 2
        args.ceiling_batches = [16, 64]
    return args


def run(args, command: str) -> dict:
    t0 = time.perf_counter()
    enable_compilation_cache(args)
    load = check_load(args.allow_busy, "profile_iteration")
    ceiling, shapes, network = {}, [], None
    for i, (n, t) in enumerate(args.shapes):
        print(f"profile_iteration: shape {n} envs x {t} steps", file=sys.stderr, flush=True)
        shape_args = argparse.Namespace(**{**vars(args), "trace": args.trace if i == 0 else None})
        network, result = measure_shape(n, t, shape_args, ceiling)
        shapes.append(result)
    for b in args.ceiling_batches:
        ceiling_point(network, b, shapes[0]["shape"]["obs_dim"], args, ceiling)
    return {
        "schema": SCHEMA, "kind": "profile_iteration", "command": command, "machine": machine_info("float32"),
        "load": load, "settings": {k: v for k, v in vars(args).items() if k not in ("out", "tag")},
        "compilation_cache": jax.config.jax_compilation_cache_dir, "shapes": shapes,
        "network_ceiling": [ceiling[b] for b in sorted(ceiling)], "wall_s": time.perf_counter() - t0,
    }


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = resolve(build_parser().parse_args(argv))
    command = shlex.join(["python", "-m", "benchmarks.profile_iteration", *argv])
    result = run(args, command)
    stem = args.tag or f"profile_iteration-{result['machine']['backend']}"
    text = profile_report.markdown(result)
    print(text)
    paths = write_result(args.out, stem, result, text)
    print("\nwrote " + " and ".join(paths) + (f"; trace in {args.trace}" if args.trace else ""))
    return result


if __name__ == "__main__":
    main()

"""The command line of the trainer (`python -m train.ppo`): argv, `--help`, the run, the summary table.

Exit codes: 0 done, 2 a user error (one `error:` line: a bad key, value, file, run directory or checkpoint),
3 training diverged (the last good checkpoint is kept); see `train.errors`.

    python -m train.ppo [CONFIG.yaml] [group.key=value ...]        # see train/config.py for every key
    python -m train.ppo --help                                     # list the keys and defaults
"""

from __future__ import annotations

import os
import sys

from rich.console import Console
from rich.table import Table

from train import console
from train.config import default_config, describe_keys, load_config, steps_per_iteration
from train.errors import TrainingDiverged, run_cli
from train.rundir import resume_dir, run_dir_of, stored_config

# jax, flax, orbax and the trainer (`train.loop`, `train.parallel`, `train.resume`) are imported after the
# header is printed (`_run`), so a run names its directory and data within a second or two of the start.

__all__ = ["TrainingDiverged", "config_from_argv", "main", "print_summary", "resume_config"]

SUMMARY_KEYS = (
    "train/reward",
    "train/episode_length",
    "train/loss_objective",
    "train/loss_critic",
    "train/loss_entropy",
    "train/approx_kl",
    "train/clip_fraction",
    "train/explained_variance",
    "train/lr",
    "train/clip_epsilon",
    "eval/reward",
    "eval/final_pv",
    "eval/bh_log_return",
    "eval/sharpe",
    "eval/max_drawdown",
    "eval/num_trades",
    "eval/train_reward",
    "eval/train_bh_log_return",
    "time/SPS-collecting (median)",
    "time/SPS-total (median)",
    "time/speed",
    "time/compile",
    "time/wall",
)


def print_summary(cfg, result, file=None) -> None:
    """A rich table of the final metrics of a `train.loop.TrainResult` (mean ± std over seeds when
    num_seeds > 1)."""
    from train.loop import format_metric

    record = dict(result.metrics)
    record.update(result.evaluation)
    table = Table(
        title=f"PPO summary: {result.iteration} iterations, "
        f"{result.iteration * steps_per_iteration(cfg) * cfg.env.num_envs:,} frames per seed"
    )
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k in SUMMARY_KEYS:
        if k not in record:
            continue
        v = record[k]
        std = record.get(k + "_seed_std")
        text = format_metric(v) if std is None else f"{format_metric(v)} ± {format_metric(std)}"
        table.add_row(k, text)
    table.add_row("run_dir", result.run_dir)
    if result.checkpoint:
        table.add_row("checkpoint", os.path.relpath(result.checkpoint, result.run_dir))
    out = file or sys.stdout
    Console(file=out, width=None if out.isatty() else 120).print(table)


USAGE = """usage: python -m train.ppo [CONFIG.yaml ...] [group.key=value ...]

Trains PPO on the trading env (one jitted XLA program per iteration). Overrides as in the reference:
  python -m train.ppo env.num_envs=128 model.hidden_size=256 optim.lr=1e-4
Resume a run exactly:  python -m train.ppo checkpoint.resume=RUN_DIR
GPU-sized (the reference's 5000 envs, 100k frames per batch):
  python -m train.ppo env.num_envs=5000 collector.frames_per_batch=100000 collector.total_frames=100000000 \\
      loss.mini_batch_size=33333 eval.test_interval=10000000

Keys (type, default):
"""


LAUNCH_KEYS = ("distributed", "coordinator_address", "num_processes", "process_id")  # parallel.*, per launch


def resume_config(argv: list[str], parsed=None):
    """`(cfg, checkpoint)` of the command line: with `checkpoint.resume=RUN_DIR`, the config stored in the
    run's newest intact checkpoint is the base (never resolved: `train.rundir.stored_config`), with
    `collector.stop_at_iteration` and the launch-specific `parallel.*` keys cleared and `logger.run_dir` set to
    RUN_DIR (a resumed run always writes there, whatever the stored config says); the command line's
    overrides apply on top. Without it, `(load_config(argv), None)` (`parsed`: that, if already done)."""
    from train.resume import load_resume

    cfg = parsed if parsed is not None else load_config(argv)
    if not cfg.checkpoint.resume:
        return cfg, None
    run_dir = resume_dir(str(cfg.checkpoint.resume))
    ckpt = load_resume(cfg)
    replaced = [f"parallel.{k}" for k in LAUNCH_KEYS] + ["collector.stop_at_iteration", "logger.run_dir"]
    base = stored_config(ckpt["config"], ckpt["path"], [*argv, *(f"{k}=" for k in replaced)])
    base.collector.stop_at_iteration = None  # a resumed run goes on unless told to stop again
    for key in LAUNCH_KEYS:
        base.parallel[key] = default_config().parallel[key]
    base.logger.run_dir = run_dir
    base.checkpoint.resume = None
    return load_config(argv, base=base), ckpt


def config_from_argv(argv: list[str]):
    """The config of a command line (see `resume_config`)."""
    return resume_config(argv)[0]


def _run(argv: list[str]) -> None:
    first = load_config(argv)
    if not first.checkpoint.resume:  # pinned now: the header names the directory the run writes into
        first.logger.run_dir = run_dir_of(first)
    import jax

    from train import compile_cache, parallel

    # before any JAX computation, reading a checkpoint included; a no-op unless parallel.distributed=true (the
    # launch-specific keys come from the command line, never from a resumed run's stored config)
    parallel.initialize(first)
    main_process = parallel.is_main_process()
    cache = compile_cache.enable(first.compilation_cache)
    if main_process and not first.checkpoint.resume:
        console.print_header(console.header_lines(first, first.logger.run_dir, jax.devices(), cache))
    cfg, ckpt = resume_config(argv, first)
    if main_process and ckpt is not None:
        console.print_header(console.header_lines(cfg, cfg.logger.run_dir, jax.devices(), cache, resumed=ckpt))
    from train.loop import train

    result = train(cfg, ckpt=ckpt)
    if main_process:
        print_summary(cfg, result)


def main(argv: list[str] | None = None) -> int:
    """`python -m train.ppo`: 0 when the run finished, 2 on a user error, 3 when training diverged (one
    `error:` line each; `train.errors.run_cli`)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if any(a in ("-h", "--help") for a in argv):
        print(USAGE + describe_keys())
        return 0
    return run_cli(lambda: _run(argv), more="python -m train.ppo --help lists every key")

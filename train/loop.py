"""The host loop of a training run: `train(cfg)` calls the compiled PPO iteration (`train.ppo.make_train`)
once per batch, fetches its metrics (the only host sync), evaluates the deterministic policy every
`eval.test_interval` frames, writes checkpoints and logs, and draws a tqdm bar.

Order of a run (issue 11): everything is validated before anything is written (the run directory is free,
the checkpoint intact and of this config's shapes, the data loads), then the run directory is locked
(`train.rundir`) and written. Iteration k's record (with its evaluation) is logged before checkpoint k is
written; a resumed run drops the records past the restored iteration (`RunLogger(resume_from=...)`), so
after a crash and resume every iteration appears exactly once in `metrics.jsonl`.

Timing (Q6). `time/SPS-total` = frames collected in the iteration (all seeds) / the wall time between the
previous iteration's record and this one's: the jitted call, eval, logging and the previous checkpoint write
(`time/checkpoint`, reported in the next record); compile excluded (everything is compiled ahead, reported
once as `time/compile`), and excluding the diagnostic call below. Collection and update are one XLA
program, so `time/SPS-collecting` comes from a separate compiled collect-only call on the current state
every `logger.timing_interval` iterations (its result is discarded, so training is unaffected): frames /
that call's wall time.
"""

from __future__ import annotations

import math
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import jax
import numpy as np
from tqdm.auto import tqdm

from train import console, parallel
from train.checkpoint import CheckpointWriter, restore_state
from train.config import ConfigError, num_iterations, to_dict, to_yaml
from train.data import build_setup, load_features
from train.errors import RunWarning, TrainingDiverged
from train.evaluate import eval_key, evaluate_policy, lane, make_episode_runner, quote_currency, save_history_png
from train.loggers import RunLogger
from train.ppo import TrainFns, make_train
from train.resume import load_resume, report_resume
from train.rundir import check_run_dir, claim_run_dir, pin_paths, write_run_files
from train.rundir import run_dir_of as resolve_run_dir


@dataclass
class TrainResult:
    run_dir: str
    runner: Any
    iteration: int
    metrics: dict = field(default_factory=dict)  # last logged record (seed means)
    evaluation: dict = field(default_factory=dict)  # last eval record (seed means)
    checkpoint: str | None = None


def reduce_seeds(metrics: dict, prefix_std: str = "_seed_std") -> dict[str, float]:
    """Per-seed arrays `[K]` -> `{name: mean}` plus `{name + "_seed_std": std}` when K > 1 (NaN ignored)."""
    out = {}
    for k, v in metrics.items():
        v = np.asarray(v, np.float64).reshape(-1)
        finite = v[np.isfinite(v)]
        out[k] = float(finite.mean()) if len(finite) else float("nan")
        if len(v) > 1:
            out[k + prefix_std] = float(finite.std()) if len(finite) > 1 else float("nan")
    return out


def format_metric(x: float | None) -> str:
    """A metric for a table or the progress bar: 4 significant digits, `n/a` when missing or not finite."""
    if x is None or not math.isfinite(x):
        return "n/a"
    return f"{x:.4g}"


# --------------------------------------------------------------------------------------- run directory
def _build_setup(cfg, frame, run_dir: str, resumed: bool):
    """`build_setup`, with the feature statistics the run was trained with when it is resumed."""
    frozen = None
    features_file = os.path.join(run_dir, "features.json")
    if resumed and os.path.isfile(features_file):
        frozen = load_features(features_file)
    try:
        return build_setup(cfg, frame, frozen_features=frozen)
    except ValueError as err:
        raise ConfigError(str(err)) from None


# --------------------------------------------------------------------------------------- AOT compile
def _signature(args) -> tuple:
    """What a compiled program depends on besides the function: tree structure, shapes, dtypes, shardings."""
    leaves, treedef = jax.tree.flatten(args)
    return (str(treedef),) + tuple(
        (np.shape(x), str(x.dtype), bool(getattr(x, "weak_type", False)), str(getattr(x, "sharding", None)))
        for x in leaves
    )


def compile_ahead(fn, *args, cache: dict | None = None):
    """Compile ahead of time; returns the compiled callable. With `cache` (a dict owned by whoever owns
    `fn`), a later call with inputs of the same signature reuses the executable (tests and resumes that
    call `train` again with the same `TrainFns`)."""
    if cache is None:
        return fn.lower(*args).compile()
    key = (id(fn), _signature(args))
    if key not in cache:
        cache[key] = (fn, fn.lower(*args).compile())  # keeps fn alive, so its id stays unique
    return cache[key][1]


# --------------------------------------------------------------------------------------- evaluation
class TrainingEvaluator:
    """The trainer's evaluation: deterministic test-split and training-window episodes for every seed
    (`train.evaluate`), history PNGs for seed 0."""

    def __init__(self, cfg, setup, network, run_dir):
        self.cfg, self.run_dir = cfg, run_dir
        self.leverage = float(cfg.env.leverage)
        self.allows_short = bool(setup.env_config.allows_short)
        self.spans = []
        if setup.test is not None:
            self.spans.append(("eval/", "history", make_episode_runner(setup.test, network)))
        self.spans.append(("eval/train_", "train_history", make_episode_runner(setup.train_eval, network)))
        self.quote_currency = quote_currency(cfg)

    def compile(self, params, batch_stats, key):
        for i, (prefix, name, runner) in enumerate(self.spans):
            keys = jax.random.split(key, jax.tree.leaves(params)[0].shape[0])
            bundle = runner.bundle
            compiled = compile_ahead(runner.fn, params, batch_stats, bundle.params, keys, cache=bundle.cache)
            self.spans[i] = (prefix, name, type(runner)(runner.bundle, compiled))

    def __call__(self, params, batch_stats, key, frames: int, logger) -> dict:
        out = {}
        for prefix, name, runner in self.spans:
            summaries, rows = evaluate_policy(runner, params, batch_stats, key, self.leverage)
            per_seed = {k: np.asarray([s[k] for s in summaries]) for k in summaries[0]}
            for k, v in reduce_seeds(per_seed).items():
                out[prefix + k] = v
            if self.cfg.eval.plots:
                path = os.path.join(self.run_dir, "plots", f"{name}_{frames:012d}.png")
                times = runner.bundle.market.exec_times
                span = "Test split" if name == "history" else "Training window"
                save_history_png(
                    lane(rows, 0),
                    path,
                    self.leverage,
                    allows_short=self.allows_short,
                    title=f"{span} {times[0]:%Y-%m-%d} .. {times[-1]:%Y-%m-%d}, after {frames:,} frames (seed 0)",
                    times=times,
                    quote_currency=self.quote_currency,
                )
                logger.log_image(f"eval/{name}", path, frames)
        return out


# --------------------------------------------------------------------------------------- host loop
class _NullLogger:
    """The logger of processes other than 0: they log nothing."""

    def log(self, *args, **kwargs) -> None:
        pass

    def log_image(self, *args, **kwargs) -> None:
        pass

    def close(self) -> None:
        pass


def train(cfg, *, frame=None, setup=None, fns: TrainFns | None = None, ckpt: dict | None = None) -> TrainResult:
    """Run (or resume) a training run. `frame`: an OHLCV DataFrame instead of `env.data_path`.

    `setup` (from `train.data.build_setup`) and `fns` (from `make_train`) can be passed in to reuse
    compiled functions across runs of the same shapes (tests do this); `ckpt` (from `load_checkpoint`) is
    the checkpoint `checkpoint.resume` names, when the caller has loaded it already. Without `fns`, the device
    mesh comes from `parallel.devices` (`train.parallel.make_mesh`). With several processes every process
    calls this; only process 0 writes the run directory, logs, evaluates and checkpoints.
    """
    t_start = time.perf_counter()
    main, resumed = parallel.is_main_process(), bool(cfg.checkpoint.resume)
    run_dir = resolve_run_dir(cfg)
    if main:
        check_run_dir(run_dir, resume=resumed)
    ckpt = (ckpt or load_resume(cfg)) if resumed else None
    cfg = pin_paths(cfg, run_dir)
    talk = main and bool(cfg.logger.progress)  # the start-up lines (train.console), with the progress bar
    if setup is None:
        with console.timed("loading the data and building the envs", enabled=talk):
            setup = _build_setup(cfg, frame, run_dir, resumed)
    fns = fns or make_train(cfg, setup.train.env, parallel.make_mesh(cfg))
    run = _TrainingRun(cfg, setup, fns, run_dir)
    with console.timed("initialising the agents (compiling init)", enabled=talk):
        runner = run.initial_runner(ckpt)  # checked against the checkpoint's shapes before anything is written
    if ckpt is not None:
        report_resume(cfg, setup, fns, ckpt, runner)
    lock = claim_run_dir(run_dir, resumed) if main else None
    try:
        if main:
            write_run_files(run_dir, to_yaml(cfg), setup.features, setup.custom)
        run.open_checkpoints(ckpt)
        with console.timed("compiling the training and evaluation programs", enabled=talk):
            run.compile(runner)
        result = run.loop(runner, ckpt)
    finally:
        run.close_checkpoints()
        if lock is not None:
            lock.release()
    result.metrics.update(run.timing_summary())
    result.metrics["time/wall"] = time.perf_counter() - t_start
    return result


class _TrainingRun:
    """One call of `train`: the compiled programs, the evaluator, the logger and the loop's running numbers."""

    def __init__(self, cfg, setup, fns: TrainFns, run_dir: str):
        self.cfg, self.setup, self.fns, self.run_dir = cfg, setup, fns, run_dir
        self.main_process = parallel.is_main_process()
        self.cfg_yaml = to_yaml(cfg)
        self.num_seeds = int(cfg.num_seeds)
        self.frames_per_iteration = fns.frames_per_iteration
        seed_keys = jax.random.split(jax.random.PRNGKey(int(cfg.seed)), self.num_seeds)
        self.env_params, self.seed_keys = fns.place_inputs(setup.train.params, seed_keys)
        self.sps_collect = float("nan")
        self.sps_collect_all, self.sps_total_all = [], []
        self.last_train_reward, self.last_eval = float("nan"), float("nan")
        self.writer, self.t_mark, self.t_checkpoint = None, None, None

    def policy_view(self, state):
        """The policy for evaluation and checkpoints; with a mesh, NumPy copies (a collective: every
        process calls this at the same point), evaluated on process 0's default device."""
        pair = (state.train.params, state.train.batch_stats)
        return pair if self.fns.mesh is None else self.fns.to_host(pair)

    def initial_runner(self, ckpt):
        """The initial runner, or the checkpoint's state in its place (ConfigError on other shapes)."""
        t0 = time.perf_counter()
        runner = self.fns.init(self.env_params, self.seed_keys)
        if ckpt is not None:
            try:
                runner = self.fns.place_runner(restore_state(runner, ckpt))
            except ValueError as err:
                raise ConfigError(f"checkpoint.resume={self.cfg.checkpoint.resume}: {err}") from None
        self.start_it = int(parallel.first_value(runner.iteration))
        self.t_init = time.perf_counter() - t0
        return runner

    def open_checkpoints(self, ckpt) -> None:
        """Process 0's checkpoint writer; on resume, the checkpoints past the restored one (damaged ones the
        resume skipped) are deleted, so the resumed run writes its own."""
        if not (self.main_process and self.cfg.checkpoint.enabled):
            return
        self.writer = CheckpointWriter(self.run_dir, int(self.cfg.checkpoint.keep))
        if ckpt is not None:
            gone = self.writer.discard_after(ckpt["iteration"])
            if gone:
                warnings.warn(
                    f"resume: deleted the checkpoints past the restored {ckpt['path']}: {', '.join(gone)}",
                    RunWarning,
                    stacklevel=2,
                )

    def close_checkpoints(self) -> None:
        if self.writer is not None:
            self.writer.close()  # waits for a write in flight

    def compile(self, runner) -> None:
        """The iteration, collection and evaluation compiled ahead for `runner`'s shapes."""
        cfg, fns = self.cfg, self.fns
        t0 = time.perf_counter()
        self.iteration = compile_ahead(fns.iteration, self.env_params, runner, cache=fns.compiled)
        timed = cfg.logger.timing_interval
        self.collect = compile_ahead(fns.collect, self.env_params, runner, cache=fns.compiled) if timed else None
        enabled = cfg.eval.enabled and self.main_process
        self.evaluator = TrainingEvaluator(cfg, self.setup, fns.network, self.run_dir) if enabled else None
        view = self.policy_view(runner) if cfg.eval.enabled else None
        if self.evaluator is not None:
            self.evaluator.compile(*view, eval_key(int(cfg.seed), 0))
        self.t_compile = self.t_init + time.perf_counter() - t0

    def timing_summary(self) -> dict[str, float]:
        """The last collection SPS, the medians over this process's iterations (the last iteration's own SPS
        includes its final eval) and the compile time."""
        nan = float("nan")
        return {
            "time/SPS-collecting": self.sps_collect,
            "time/SPS-collecting (median)": float(np.median(self.sps_collect_all)) if self.sps_collect_all else nan,
            "time/SPS-total (median)": float(np.median(self.sps_total_all)) if self.sps_total_all else nan,
            "time/compile": self.t_compile,
        }

    def save(self, state, it: int, frames: int) -> str | None:
        """Checkpoint `state` (every process takes part with a mesh; process 0 writes, in the background)."""
        if not self.cfg.checkpoint.enabled:
            return None
        if self.fns.mesh is not None:
            state = self.fns.to_host(state)
        if self.writer is None:
            return None
        meta = {
            "frames": frames,
            "num_seeds": self.num_seeds,
            "obs_dim": self.setup.obs_dim,
            "num_actions": self.setup.num_actions,
            "data": self.setup.data,
        }
        policy = {"params": state.train.params, "batch_stats": state.train.batch_stats}
        return self.writer.save(state, iteration=it, config_yaml=self.cfg_yaml, policy=policy, meta=meta)

    def _progress_bar(self, n_it: int, start_it: int):
        fns, K, F = self.fns, self.num_seeds, self.frames_per_iteration
        if not (self.cfg.logger.progress and self.main_process):
            return None
        return tqdm(
            total=n_it * F,
            initial=start_it * F,
            unit="frames",
            unit_scale=True,
            dynamic_ncols=True,
            desc=("ppo" + (f" x{K}" if K > 1 else "") + (f" [{fns.mesh.size} dev]" if fns.mesh is not None else "")),
            file=sys.stderr,
        )

    def loop(self, runner, ckpt) -> TrainResult:
        """Iterate from the runner's iteration to the stop; the logger and the bar are closed on the way out."""
        cfg, fns, F, start_it = self.cfg, self.fns, self.frames_per_iteration, self.start_it
        resumed_step = start_it * F if ckpt is not None else None  # later records are dropped (train/loggers.py)
        self.logger = (
            RunLogger(cfg, self.run_dir, to_dict(cfg), resume_from=resumed_step) if self.main_process else _NullLogger()
        )
        n_it = num_iterations(cfg)
        stop = n_it if cfg.collector.stop_at_iteration is None else min(n_it, int(cfg.collector.stop_at_iteration))
        self.result = TrainResult(run_dir=self.run_dir, runner=runner, iteration=start_it)
        if ckpt is not None:
            self.result.checkpoint = ckpt["path"]
        self.t_loop = time.perf_counter()
        self.frames_this_run = 0
        self.bar = self._progress_bar(n_it, start_it)
        try:
            self.logger.log(
                {
                    "time/compile": self.t_compile,
                    "parallel/devices": fns.mesh.size if fns.mesh is not None else 1,
                    "parallel/processes": jax.process_count(),
                    "parallel/seeds_sharded": int(fns.seeds_sharded),
                },
                step=start_it * F,
                iteration=start_it,
            )
            for it in range(start_it, stop):
                runner = self._iterate(runner, it, start_it, last=it + 1 == stop)
        finally:
            if self.bar is not None:
                self.bar.close()
            self.logger.close()
        return self.result

    def _iterate(self, runner, it: int, start_it: int, last: bool):
        """One iteration with its timing and evaluation, its log record, then its checkpoint."""
        K, F = self.num_seeds, self.frames_per_iteration
        t_it = time.perf_counter()
        new_runner, metrics = self.iteration(self.env_params, runner)
        metrics = self.fns.to_host(metrics)  # the one host sync of the iteration (replicated: no collective)
        t_train = time.perf_counter() - t_it
        frames = (it + 1) * F
        finite, finite_data = metrics.pop("train/finite"), metrics.pop("train/finite_data", True)
        if not bool(np.all(finite)):
            self._diverged(metrics, it, frames, data_ok=bool(np.all(finite_data)))
        runner = new_runner
        log = reduce_seeds(metrics)
        log["time/iteration"] = t_train
        if self.t_checkpoint is not None:  # the previous iteration's checkpoint, written after its record
            log["time/checkpoint"], self.t_checkpoint = self.t_checkpoint, None
        t_collect = self._time_collect(runner, it, start_it, log)
        save = self._evaluate(runner, it, frames, last, log)
        self.frames_this_run += K * F
        # the diagnostic collect-only call is not part of training: excluded
        now = time.perf_counter()
        log["time/SPS-total"] = K * F / (now - (self.t_mark or t_it) - t_collect)
        self.sps_total_all.append(log["time/SPS-total"])
        log["time/speed"] = self.frames_this_run / (now - self.t_loop)
        self.logger.log(log, step=frames, iteration=it + 1)
        self.t_mark = time.perf_counter()
        if save:
            self.result.checkpoint = self.save(runner, it + 1, frames)
            self.t_checkpoint = time.perf_counter() - self.t_mark
        result = self.result
        result.metrics, result.iteration, result.runner = log, it + 1, runner
        if math.isfinite(log.get("train/reward", float("nan"))):
            self.last_train_reward = log["train/reward"]
        if self.bar is not None:
            self.bar.update(F)
            self.bar.set_postfix(
                reward=format_metric(self.last_train_reward), eval=format_metric(self.last_eval), refresh=False
            )
        return runner

    def _diverged(self, metrics: dict, it: int, frames: int, data_ok: bool):
        """Log the bad record and stop; nothing is checkpointed from the non-finite state."""
        bad = reduce_seeds(metrics)
        self.logger.log(bad, step=frames, iteration=it + 1, diverged=True)
        where = self.result.checkpoint or "none was written yet"
        if data_ok:
            o = self.cfg.optim
            hint = (
                "The batch was finite, so training diverged: lower optim.lr (now "
                f"{o.lr:g}) or optim.max_grad_norm (now {o.max_grad_norm:g}), or keep optim.anneal_lr=true."
            )
        else:
            hint = (
                "The observation or reward batch was already non-finite: check the data and features first "
                "(NaN, zero or extreme prices in env.data_path, env.features), not the optimiser."
            )
        raise TrainingDiverged(
            f"non-finite loss, gradient, parameters or BatchNorm statistics at iteration {it + 1} (frames "
            f"{frames}): train/loss={format_metric(bad.get('train/loss'))}, "
            f"train/grad_norm={format_metric(bad.get('train/grad_norm'))}. {hint} "
            f"Stopping; the last good checkpoint is kept: {where}."
        )

    def _time_collect(self, runner, it: int, start_it: int, log: dict) -> float:
        """Every `logger.timing_interval` iterations, time the collect-only program on `runner`."""
        if self.collect is None or (it - start_it) % int(self.cfg.logger.timing_interval) != 0:
            return 0.0
        t_c = time.perf_counter()
        jax.block_until_ready(self.collect(self.env_params, runner))
        t_collect = time.perf_counter() - t_c
        self.sps_collect = self.num_seeds * self.frames_per_iteration / t_collect
        log["time/collecting"] = t_collect
        log["time/SPS-collecting"] = self.sps_collect
        self.sps_collect_all.append(self.sps_collect)
        return t_collect

    def _evaluate(self, runner, it: int, frames: int, last: bool, log: dict) -> bool:
        """Evaluate after the first iteration, when `eval.test_interval` frames are crossed, and at the end;
        returns whether this iteration is checkpointed (the same moments)."""
        cfg, F = self.cfg, self.frames_per_iteration
        interval = int(cfg.eval.test_interval)
        crossed = (it * F) // interval < frames // interval
        if cfg.eval.enabled and (crossed or it == 0 or last):
            t_e = time.perf_counter()
            view = self.policy_view(runner)
            if self.evaluator is not None:
                ev = self.evaluator(*view, eval_key(int(cfg.seed), it + 1), frames, self.logger)
                log.update(ev)
                self.result.evaluation = ev
                self.last_eval = ev.get("eval/reward", ev.get("eval/train_reward", float("nan")))
            log["time/eval"] = time.perf_counter() - t_e
        return bool(cfg.checkpoint.enabled and (crossed or last or (cfg.eval.enabled and it == 0)))

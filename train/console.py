"""What a run prints before its progress bar: a header within a second or two of the start, then a
"compiling…" line with its elapsed time, so a first run never sits silent while XLA compiles."""

from __future__ import annotations

import sys
import threading
import time
from contextlib import contextmanager

from rich.console import Console

from train.config import num_iterations, steps_per_iteration


def _console(file=None) -> Console:
    out = file or sys.stdout
    return Console(file=out, width=None if out.isatty() else 120, highlight=False)


def header_lines(cfg, run_dir: str, devices: list, backends: str, cache_dir) -> list[str]:
    """The header of a training run, one fact per line."""
    e = cfg.env
    frames = steps_per_iteration(cfg) * int(e.num_envs)
    data = e.data_path or "the bundled BTC/USDT 1-minute sample (trading_jax.datasets)"
    split = f"train < {e.test_split_start} <= test" if e.test_split_start else "no test split"
    kinds = sorted({d.platform for d in devices})
    return [
        f"run dir   {run_dir}",
        f"data      {data} ({split})",
        f"envs      {int(e.num_envs)} x {steps_per_iteration(cfg)} steps = {frames:,} frames per iteration, "
        f"{num_iterations(cfg):,} iterations, {int(cfg.collector.total_frames):,} frames"
        + (f", {int(cfg.num_seeds)} seeds" if int(cfg.num_seeds) > 1 else ""),
        f"devices   {len(devices)} x {'/'.join(kinds)}",
        f"logging   {backends}",
        f"cache     {cache_dir or 'off'} (compiled programs)",
    ]


def print_header(lines: list[str], file=None) -> None:
    console = _console(file)
    console.print("[bold]trading_jax PPO[/bold]")
    for line in lines:
        console.print("  " + line, soft_wrap=True)


@contextmanager
def compiling(what: str = "compiling the training program", file=None):
    """Show `what…` with its elapsed time while the body runs (a live spinner on a terminal, two plain lines
    otherwise), then how long it took."""
    console = _console(file)
    t0 = time.perf_counter()
    if not console.is_terminal:
        console.print(f"{what}…")
        yield
        console.print(f"{what}: done in {time.perf_counter() - t0:.1f} s")
        return
    stop = threading.Event()
    with console.status(f"{what}…") as status:

        def tick():
            while not stop.wait(0.5):
                status.update(f"{what}… {time.perf_counter() - t0:.0f} s")

        ticker = threading.Thread(target=tick, daemon=True)
        ticker.start()
        try:
            yield
        finally:
            stop.set()
            ticker.join()
    console.print(f"{what}: done in {time.perf_counter() - t0:.1f} s")

"""Shared helpers: timing, machine description, JSON files, command-line lists, published reference figures."""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

SCHEMA = "trading_jax.benchmarks/1"
DEFAULT_OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")

# TorchTrade 0.1.0 as published in issue 4 (2-core CPU, torch on CPU, 1Hour frame, window 24, L=3,
# levels [-1, 0, 1], random actions). NOT measured here: context only.
REFERENCE_PUBLISHED = {
    "source": "TorchTrade 0.1.0, published figures quoted in issue 4 (2-core CPU); not measured here",
    "env": {
        "scalar_loop": 9.2e3,
        "process_pool_2": 3.6e3,
        "torch_vectorized": {64: 143e3, 256: 524e3, 1024: 1.5e6, 5000: 3.2e6},
    },
    "ppo": {"num_envs": 64, "collect_fps": 38e3, "total_fps": 10.5e3},
}


# --------------------------------------------------------------------------------------- timing
def block(x):
    """`jax.block_until_ready` without importing JAX at module load."""
    import jax

    return jax.block_until_ready(x)


def compile_timed(jitted, *args) -> tuple[Any, float]:
    """`jitted.lower(*args).compile()` and its wall time in seconds (tracing + lowering + XLA compile)."""
    t0 = time.perf_counter()
    compiled = jitted.lower(*args).compile()
    return compiled, time.perf_counter() - t0


def time_call(fn: Callable, *args) -> tuple[Any, float]:
    """One call, blocked until its outputs are ready: `(outputs, seconds)`."""
    t0 = time.perf_counter()
    out = block(fn(*args))
    return out, time.perf_counter() - t0


def time_repeats(fn: Callable, *args, repeats: int) -> list[float]:
    """Wall times of `repeats` blocked calls (the caller has done the warm-up)."""
    return [time_call(fn, *args)[1] for _ in range(max(int(repeats), 1))]


def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs))


# --------------------------------------------------------------------------------------- machine
def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(dtype: str | None = None) -> dict:
    """CPU model, cores, RAM, Python / jax / jaxlib versions, backend, device kind, dtype and date."""
    import jax
    import jaxlib
    import psutil

    dev = jax.devices()[0]
    vm = psutil.virtual_memory()
    return {
        "cpu_model": _cpu_model(),
        "cpu_cores_logical": os.cpu_count(),
        "cpu_cores_physical": psutil.cpu_count(logical=False),
        "cpu_cores_usable": usable_cores(),
        "ram_total_bytes": int(vm.total),
        "ram_available_bytes": int(vm.available),
        "load_average_at_start": _loadavg(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "backend": jax.default_backend(),
        "device_kind": dev.device_kind,
        "device_count": jax.device_count(),
        "dtype": dtype,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def machine_label(machine: dict) -> str:
    """Short name of a machine for tables and legends, e.g. `cpu: Intel Xeon (2 cores)` or `gpu: NVIDIA H100`."""
    if machine.get("backend") == "cpu":
        return f"cpu: {machine.get('cpu_model', '?')} ({machine.get('cpu_cores_usable', '?')} cores)"
    return f"{machine.get('backend')}: {machine.get('device_kind')}"


# --------------------------------------------------------------------------------------- machine load
BUSY_CORES = 0.2  # other processes using more than this many cores (summed) make the machine busy
LOAD_SAMPLE_S = 1.0
MIN_WINDOW_S = 0.5


def _process_tree_cpu(proc) -> float:
    """CPU seconds (user + system) of `proc` and its live descendants."""
    import psutil

    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total


def _cpu_by_process(skip: set[int]) -> dict[int, tuple[str, float]]:
    """`{pid: (name, cpu seconds)}` of every visible process outside `skip`."""
    import psutil

    out = {}
    for p in psutil.process_iter(["pid", "name", "cpu_times"]):
        if p.info["pid"] in skip or p.info["cpu_times"] is None:
            continue
        out[p.info["pid"]] = (p.info["name"] or "?", p.info["cpu_times"].user + p.info["cpu_times"].system)
    return out


def _busy_seconds(times) -> float:
    return sum(getattr(times, f, 0.0) for f in ("user", "nice", "system", "irq", "softirq", "steal"))


class LoadMeter:
    """CPU used by OTHER processes while a block runs: `with LoadMeter() as load: ...; load.result`.

    `others_cores` is CPU-seconds per wall second used by everything but this process and its children:
    the machine's busy time (`/proc/stat`, when it counts only this machine's usable cores) minus our own,
    else the sum over the processes we can see. Above `BUSY_CORES` the figure is marked busy. A block shorter
    than `min_window_s` is measured over that window (the end sample waits)."""

    def __init__(self, busy_cores: float = BUSY_CORES, min_window_s: float = MIN_WINDOW_S):
        self.busy_cores, self.min_window_s = busy_cores, min_window_s
        self.result: dict | None = None

    def __enter__(self) -> LoadMeter:
        import psutil

        self._me = psutil.Process()
        self._skip = {self._me.pid} | {c.pid for c in self._me.children(recursive=True)}
        self._procs0 = _cpu_by_process(self._skip)  # slow (every process): before the three that must agree
        self._t0, self._own0, self._sys0 = time.perf_counter(), _process_tree_cpu(self._me), psutil.cpu_times()
        return self

    def __exit__(self, *exc) -> None:
        import psutil

        # CPU times tick at 10 ms: a shorter block is measured over a window stretched to `min_window_s`.
        time.sleep(max(self.min_window_s - (time.perf_counter() - self._t0), 0.0))
        sys1, own1, wall = psutil.cpu_times(), _process_tree_cpu(self._me), time.perf_counter() - self._t0
        own = (own1 - self._own0) / wall
        system = (_busy_seconds(sys1) - _busy_seconds(self._sys0)) / wall
        skip = self._skip | {c.pid for c in self._me.children(recursive=True)}
        procs = _cpu_by_process(skip)
        per_proc = sorted(((n, (c - self._procs0.get(pid, (n, 0.0))[1]) / wall, pid) for pid, (n, c) in procs.items()),
                          key=lambda x: -x[1])
        whole_machine = psutil.cpu_count() <= usable_cores()
        others = system - own if whole_machine else sum(max(c, 0.0) for _, c, _ in per_proc)
        others = min(max(others, 0.0), float(usable_cores()))
        self.result = {
            "wall_s": wall,
            "others_cores": others,
            "own_cores": own,
            "busy": others > self.busy_cores,
            "busy_threshold_cores": self.busy_cores,
            "method": "system busy time minus this process tree" if whole_machine else "sum over visible processes",
            "top_others": [{"pid": pid, "name": n, "cores": round(c, 3)} for n, c, pid in per_proc[:5] if c > 0.02],
            "loadavg": _loadavg(),
        }


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def machine_load(sample_s: float = LOAD_SAMPLE_S) -> dict:
    """The machine's load now: other processes' CPU over a `sample_s` idle sample (`LoadMeter`)."""
    with LoadMeter() as meter:
        time.sleep(sample_s)
    return meter.result


def describe_load(load: dict | None) -> str:
    """`other processes 0.03 cores (quiet), load average 1.2/0.9/0.8`, or the busiest processes when busy."""
    if not load:
        return "load not measured"
    state = "BUSY" if load["busy"] else "quiet"
    text = f"other processes {load['others_cores']:.2f} cores ({state})"
    if load.get("loadavg"):
        text += ", load average " + "/".join(f"{x:g}" for x in load["loadavg"])
    if load["busy"] and load.get("top_others"):
        text += "; busiest: " + ", ".join(f"{p['name']} ({p['pid']}) {p['cores']:.2f}" for p in load["top_others"])
    return text


def add_load_args(parser) -> None:
    """The flags every benchmark takes: `--allow-busy` and `--compilation-cache`."""
    parser.add_argument("--allow-busy", action="store_true",
                        help=f"run even when other processes use more than {BUSY_CORES} cores; the figures are "
                             "marked busy (not comparable with a quiet machine's)")
    parser.add_argument("--compilation-cache", default="auto", metavar="auto|off|DIR",
                        help="JAX's persistent compilation cache (train/compile_cache.py); compile times read from "
                             "a warm cache are load times: `off` measures cold compiles")


def enable_compilation_cache(args) -> str | None:
    """Turn on the persistent compilation cache that `--compilation-cache` asks for; the folder, or None."""
    from train import compile_cache

    folder = compile_cache.enable(getattr(args, "compilation_cache", "auto"))
    return None if folder is None else str(folder)


def check_load(allow_busy: bool, what: str, sample_s: float = LOAD_SAMPLE_S) -> dict:
    """Sample the machine's load before a benchmark; refuse a busy machine unless `allow_busy`."""
    load = machine_load(sample_s)
    print(f"{what}: machine load: {describe_load(load)}", file=sys.stderr, flush=True)
    if load["busy"]:
        if not allow_busy:
            raise SystemExit(f"{what}: the machine is busy (other processes use {load['others_cores']:.2f} cores, "
                             f"threshold {BUSY_CORES}): its timings would not be comparable. Wait for a quiet "
                             f"machine, or pass --allow-busy to measure anyway (figures marked busy).")
        print(f"WARNING: {what}: measuring on a BUSY machine (--allow-busy); these figures are marked busy and "
              "are not comparable with a quiet machine's.", file=sys.stderr, flush=True)
    return load


def timed_with_load(fn: Callable, *args, **kwargs) -> tuple[Any, dict]:
    """`fn(*args, **kwargs)` and the `LoadMeter` result of the call."""
    with LoadMeter() as meter:
        out = fn(*args, **kwargs)
    return out, meter.result


# --------------------------------------------------------------------------------------- files and args
def write_json(path: str, payload: dict) -> str:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as fh:
        json.dump(payload, fh, indent=1, default=_json_default)
        fh.write("\n")
    return path


def write_result(out: str, stem: str, result: dict, markdown: str) -> list[str]:
    """`<out>/<stem>.json` (the result) and `<out>/<stem>.md` (its Markdown summary); returns both paths."""
    json_path = write_json(os.path.join(out, stem + ".json"), result)
    md_path = os.path.join(out, stem + ".md")
    with open(md_path, "w") as fh:
        fh.write(markdown + "\n")
    return [json_path, md_path]


def _json_default(x):
    if hasattr(x, "tolist"):
        return x.tolist()
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def read_json(path: str) -> dict:
    with open(path) as fh:
        data = json.load(fh)
    if data.get("schema") != SCHEMA:
        raise ValueError(f"{path}: not a benchmark result (schema {data.get('schema')!r}, expected {SCHEMA!r})")
    return data


def int_list(text: str) -> list[int]:
    """`"1,8,32"` -> `[1, 8, 32]` (argparse type); `k` / `M` suffixes allowed (`"64k"`)."""
    out = []
    for part in str(text).split(","):
        part = part.strip().lower()
        if not part:
            continue
        mult = 1
        if part[-1] in "km":
            mult = 1024 if part[-1] == "k" else 1024 * 1024
            part = part[:-1]
        out.append(int(part) * mult)
    if not out or any(n < 1 for n in out):
        raise ValueError(f"expected a comma-separated list of positive ints, got {text!r}")
    return out


def str_list(text: str) -> list[str]:
    return [p.strip() for p in str(text).split(",") if p.strip()]


def md_table(header: list[str], rows: list[list[str]], align: str | None = None) -> str:
    """A Markdown table; `align` is one letter per column, `l` or `r` (default: first left, the rest right)."""
    align = align or "l" + "r" * (len(header) - 1)
    sep = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(sep) + " |"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def pyplot():
    """`matplotlib.pyplot` on the Agg backend (files only, no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def si(x: float | None, digits: int = 3) -> str:
    """`1.53e6` -> `1.53M` (steps/s and frames/s in tables)."""
    if x is None or x != x:
        return "n/a"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.{digits}g}{unit}"
    return f"{x:.{digits}g}"

"""Where the compiled iteration spends its time, read back from a `jax.profiler` trace (`--trace DIR`).

The trace (`<DIR>/plugins/profile/<run>/*.trace.json.gz`, Chrome trace format) holds one event per executed
XLA:CPU thunk (HLO instruction: fusions, copies, dots, while loops, ...) on the XLA threads. Over one
annotated window (a warm iteration) this sums each event's EXCLUSIVE time (its duration minus the events nested
inside it on the same thread), grouped by the instruction's name without its numeric suffix (`copy.272` ->
`copy`). Thread-milliseconds: XLA may run thunks on several threads at once, so the total can exceed the wall.
"""

from __future__ import annotations

import collections
import glob
import gzip
import json
import os
import re

SKIP = ("ThunkExecutor", "ThreadpoolListener", "end: ")


def latest_trace(trace_dir: str) -> str | None:
    files = glob.glob(os.path.join(trace_dir, "plugins", "profile", "*", "*.trace.json.gz"))
    return max(files, key=os.path.getmtime) if files else None


def _exclusive(events: list[dict]) -> list[tuple[str, float]]:
    """`(name, exclusive microseconds)` of events on ONE thread (nested intervals)."""
    out, stack = [], []  # stack: [end, name, child time]
    for e in sorted(events, key=lambda e: (e["ts"], -e.get("dur", 0))):
        start, end = e["ts"], e["ts"] + e.get("dur", 0)
        while stack and stack[-1][0] <= start:
            _close(stack, out)
        if stack:
            stack[-1][2] += end - start
        stack.append([end, e["name"], 0.0, end - start])
    while stack:
        _close(stack, out)
    return out


def _close(stack: list, out: list) -> None:
    _, name, child, dur = stack.pop()
    out.append((name, max(dur - child, 0.0)))


def summarize(trace_file: str, window: str, top: int = 12) -> dict:
    """Thread-ms per instruction kind and per instruction inside the annotation named `window`."""
    with gzip.open(trace_file) as fh:
        events = json.load(fh)["traceEvents"]
    threads = {(e["pid"], e["tid"]): e["args"].get("name", "") for e in events
               if e.get("ph") == "M" and e.get("name") == "thread_name"}
    marks = [e for e in events if e.get("ph") == "X" and e.get("name") == window]
    if not marks:
        return {"window": window, "error": "annotation not found in the trace"}
    lo, hi = marks[0]["ts"], marks[0]["ts"] + marks[0]["dur"]
    per_thread = collections.defaultdict(list)
    for e in events:
        if (e.get("ph") == "X" and lo <= e["ts"] <= hi and threads.get((e["pid"], e["tid"]), "").startswith("tf_XLA")
                and not e["name"].startswith(SKIP)):
            per_thread[(e["pid"], e["tid"])].append(e)
    kinds, ops = collections.Counter(), collections.Counter()
    for evs in per_thread.values():
        for name, us in _exclusive(evs):
            kinds[re.sub(r"\.\d+$", "", name)] += us / 1e3
            ops[name] += us / 1e3
    return {"window": window, "trace": trace_file, "wall_ms": marks[0]["dur"] / 1e3,
            "thread_ms": sum(kinds.values()), "by_kind": kinds.most_common(top), "by_op": ops.most_common(top)}

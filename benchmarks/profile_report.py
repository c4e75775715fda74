"""Markdown summary of a `benchmarks.profile_iteration` result: per-phase table per shape, network ceiling."""

from __future__ import annotations

from benchmarks.common import describe_load, machine_label, si
from benchmarks.common import md_table as _table

PHASES = (
    ("collection", "collection (make_train's collect: steps x (policy forward + env step))"),
    ("gae", "GAE: values + advantages (every epoch when recomputed)"),
    ("gather", "minibatch gather (permutation + take)"),
    ("fwd_bwd", "forward/backward of the PPO loss"),
    ("optimizer", "optimiser (clip + Adam)"),
    ("metrics", "metrics (reductions + host fetch)"),
    ("host_loop", "host loop (train.loop per iteration - blocked iteration)"),
)


def _load_cell(load: dict | None) -> str:
    if not load:
        return ""
    return f"{load['others_cores']:.2f}" + (" BUSY" if load["busy"] else "")


def _ms(x: float | None) -> str:
    return "" if x is None else f"{1e3 * x:.1f}"


def shape_markdown(r: dict) -> str:
    s, F = r["shape"], r["frames_per_iteration"]
    it = r["iteration"]["median_s"]
    net = r["network_only_s"]
    lines = [f"#### {r['num_envs']} envs x {r['steps_per_env']} steps = {F} frames per iteration",
             "", f"{s['epochs']} epochs x {s['minibatches']} minibatches of {s['mb_size']}; advantages "
             f"{'recomputed every epoch' if s['recompute'] else 'computed once'}; GAE passes {s['gae_passes']}, "
             f"loss trunk passes {s['trunk_passes']}. Compile of the iteration: {r['compile_iteration_s']:.1f} s.", ""]
    rows, total = [], 0.0
    for key, label in PHASES:
        p = r["phases"][key]
        total += p["median_s"]
        ceil = net.get(key)
        ratio = f"{p['median_s'] / ceil:.2f}" if ceil else ""
        rows.append([label, _ms(p["median_s"]), f"{100 * p['median_s'] / it:.0f}%", _ms(ceil), ratio,
                     _load_cell(p.get("load"))])
    rows.append(["... of which the env alone (steps x num_envs, random actions)", "", "",
                 _ms(net["collection_env"]), "", _load_cell(r["env_only"]["load"])])
    ceiling = net["collection"] + net["gae"] + net["fwd_bwd"]
    rows.append(["**sum of phases**", _ms(total), f"{100 * total / it:.0f}%", _ms(ceiling),
                 f"{total / ceiling:.2f}", ""])
    for key, label in (("iteration", "**iteration** (one jitted program, blocked)"),
                       ("iteration_with_metrics_fetch", "iteration + metrics fetched to the host"),
                       ("train_loop_iteration", "iteration in `train.loop.train` (end to end)")):
        x = r[key]
        rows.append([label, _ms(x["median_s"]), f"{100 * x['median_s'] / it:.0f}%", "", "",
                     _load_cell(x["load"])])
    lines.append(_table(["phase", "ms / iteration", "of iteration", "network-only ms", "ratio",
                         "other CPU (cores)"], rows))
    if r.get("trace") and "by_kind" in r["trace"]:
        lines += ["", trace_markdown(r["trace"])]
    loop_s = r["train_loop_iteration"]["median_s"]
    lines += ["", f"Frames/s: iteration {si(F / it)}, end to end (train.loop) {si(F / loop_s)}; network-only "
              f"ceiling {si(F / ceiling)} (end to end = {100 * ceiling / loop_s:.0f}% of the ceiling). Collection "
              f"alone: {si(F / r['phases']['collection']['median_s'])} frames/s."]
    return "\n".join(lines)


def trace_markdown(t: dict) -> str:
    """The XLA instructions of the traced warm iteration by exclusive thread time."""
    rows = [[kind, f"{ms:.1f}", f"{100 * ms / t['thread_ms']:.0f}%"] for kind, ms in t["by_kind"]]
    head = (f"From the `jax.profiler` trace (`{t['trace']}`), the warm iteration: {t['wall_ms']:.1f} ms wall, "
            f"{t['thread_ms']:.1f} thread-ms in XLA instructions, by kind (exclusive time):")
    return "\n".join([head, "", _table(["instruction kind", "thread-ms", "share"], rows)])


def ceiling_markdown(rows: list[dict]) -> str:
    table = []
    for c in rows:
        busy = any((c.get(k + "_load") or {}).get("busy") for k in ("forward", "forward_backward"))
        table.append([str(c["batch"]), si(c["forward_backward_sps"]), si(c["forward_sps"]),
                      si(c["forward_backward_seed_vmap_sps"]),
                      f"{c['forward_backward_seed_vmap_sps'] / c['forward_backward_sps']:.2f}",
                      _load_cell(c.get("forward_backward_load")) + (" (busy)" if busy else "")])
    header = ["batch", "forward + backward /s", "forward only /s", "forward + backward, vmapped over 1 seed /s",
              "vmapped / plain", "other CPU (cores)"]
    return "\n".join(["The `ActorCritic` alone, jitted, BatchNorm in training mode, dropout 0.1 (samples/s):", "",
                      _table(header, table)])


def markdown(result: dict) -> str:
    m = result["machine"]
    lines = [f"### Where one PPO iteration's time goes: {machine_label(m)}", "",
             f"`{result['command']}`", "",
             f"jax {m['jax']} / jaxlib {m['jaxlib']}, {m['date']}. Machine load at start: "
             f"{describe_load(result['load'])}. \"other CPU\" is what other processes used while each figure was "
             "measured; BUSY marks a figure measured on a busy machine (not comparable).", "",
             "Each phase is its own jitted program built from the trainer's parts (benchmarks/iteration_pieces.py), "
             "run as often as one iteration runs it; ratio = phase / its network-only cost.", ""]
    for r in result["shapes"]:
        lines += [shape_markdown(r), ""]
    lines.append(ceiling_markdown(result["network_ceiling"]))
    return "\n".join(lines)

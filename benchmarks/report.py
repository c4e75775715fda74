"""Render benchmark JSON files as Markdown tables and log-log PNG plots; combine several machines.

    python -m benchmarks.report benchmarks/results/*.json [--out DIR] [--stem combined]

Prints each file's tables (env throughput, PPO throughput, PPO scaling against devices) and writes
`<stem>-env.png` / `<stem>-ppo.png` with every env and PPO file's series (one line per machine, config and dtype).
"""

from __future__ import annotations

import argparse
import os
import sys

from benchmarks import configs, profile_report, vs_report
from benchmarks.common import DEFAULT_OUT, REFERENCE_PUBLISHED, describe_load, machine_label, read_json, si
from benchmarks.common import md_table as _table
from benchmarks.common import pyplot as _plt

SEED_CLAIMS = {"8-32": "20-100x", "64-256": "100-400x"}
BASELINE_STYLE = {
    "scalar_loop": ("dimgrey", ":"), "process_pool": ("tan", "--"), "process_pool_lockstep": ("brown", "-."),
}
NOT_MEASURED = "published, NOT measured here"


def _heading(result: dict, what: str) -> str:
    m = result["machine"]
    text = (f"### {what}: {machine_label(m)}\n\njax {m['jax']} / jaxlib {m['jaxlib']}, backend {m['backend']} "
            f"({m['device_kind']}), {m['ram_total_bytes'] / 2**30:.0f} GiB RAM, {m['date']}. Machine load at start: "
            f"{describe_load(result.get('load'))}.")
    rows = [r for key in ("env", "ppo", "rows") for r in result.get(key) or [] if isinstance(r, dict)]
    busy = [r for r in rows if (r.get("load") or {}).get("busy")]
    if busy or (result.get("load") or {}).get("busy"):
        text += (f"\n\n**Measured on a BUSY machine ({len(busy)} of {len(rows)} points had other processes above "
                 "the threshold): not comparable.**")
    return text


def _key(r: dict) -> tuple[str, str]:
    """A measurement's series: its config, and its dtype with the device count when it ran on several."""
    devices = r.get("devices", 1)
    return r["config"], r["dtype"] + (f" x{devices} devices" if devices > 1 else "")


def _series(rows: list[dict]) -> list[tuple]:
    seen = []
    for r in rows:
        k = _key(r)
        if k not in seen:
            seen.append(k)
    return seen


def env_markdown(result: dict) -> str:
    """Steps/s and compile tables, baselines, published reference figures, speed-ups and memory."""
    rows = result["env"]
    series = _series(rows)
    by = {(*_key(r), r["num_envs"]): r for r in rows}
    sizes = sorted({r["num_envs"] for r in rows})
    torch = REFERENCE_PUBLISHED["env"]["torch_vectorized"]
    out = [_heading(result, "Env steps/s"), "",
           f"Observations {result['observations']}. Median of {result['settings']['repeats']} timed calls after a "
           "warm-up; each call is one jitted program (reset + scan of vmapped env.step, random actions inside).", ""]
    for c, desc in dict((r["config"], r["description"]) for r in rows).items():
        out.append(f"- config {c}: {desc}")
    out.append("")
    header = ["num_envs"] + [f"{c} {d}" for c, d in series] + [f"reference torch-vectorized ({NOT_MEASURED})"]
    table = []
    for n in sizes:
        cells = [si(by[(c, d, n)]["steps_per_s"]) if (c, d, n) in by else "" for c, d in series]
        table.append([str(n)] + cells + [si(torch[n]) if n in torch else ""])
    out += [_table(header, table), "", "Compile time, s (lower + compile, apart from the timed calls):", ""]
    table = [[str(n)] + [f"{by[(c, d, n)]['compile_s']:.2f}" if (c, d, n) in by else "" for c, d in series]
             for n in sizes]
    out += [_table(["num_envs"] + [f"{c} {d}" for c, d in series], table)]
    if result.get("skipped"):
        out += ["", f"Skipped (deadline): {len(result['skipped'])} points."]
    base = result.get("baselines") or []
    if base:
        out += ["", f"Per-env Python baselines (config {base[0]['config']}, measured here, "
                    f"{base[0]['seconds']:.1f} s budget each):", ""]
        out.append(_table(["baseline", "processes", "steps/s"],
                          [[b["label"], str(b["processes"]), si(b["steps_per_s"])] for b in base]))
    pub = REFERENCE_PUBLISHED
    out += ["", f"Reference ({pub['source']}):", "",
            _table(["TorchTrade 0.1.0 (published, NOT measured here)", "steps/s"],
                   [["scalar env", si(pub["env"]["scalar_loop"])],
                    ["2-process pool", si(pub["env"]["process_pool_2"])]]
                   + [[f"torch-vectorized, {n} envs", si(v)] for n, v in torch.items()])]
    sp = result.get("speedups") or []
    if sp:
        names = [k for k in sp[0] if k.startswith("x_")]
        labels = {b["name"]: b["label"] for b in base}
        labels["torchtrade_scalar_published"] = f"TorchTrade scalar env ({NOT_MEASURED})"
        header = ["band", "num_envs", "config", "dtype", "steps/s"] + [f"x {labels.get(k[2:], k[2:])}" for k in names]
        header.append("seed's claim")
        table = [[s["band"], str(s["num_envs"]), s["config"], _key(s)[1], si(s["steps_per_s"])]
                 + [f"{s[k]:.0f}x" for k in names] + [SEED_CLAIMS[s["band"]]] for s in sp]
        out += ["", "Speed-up of the JAX env over the per-env Python baselines:", "", _table(header, table)]
    mem = result.get("memory")
    if mem:
        out += ["", memory_markdown(mem)]
    return "\n".join(out)


def memory_markdown(mem: dict) -> str:
    def peak(p):
        for key in ("peak_rss_bytes", "peak_bytes_in_use"):
            if key in p:
                return f"{p[key] / 2**20:.0f}"
        return f"failed: {p.get('error')}"

    def xla(p):
        return f"{p['xla_temp_bytes'] / 2**20:.1f}" if "xla_temp_bytes" in p else ""

    table = [[str(p["num_envs"]), peak(p), xla(p)] for p in mem["points"]]
    lines = [f"Memory (config {mem['config']}, {mem['dtype']}; {mem['method']}):", "",
             _table(["num_envs", "peak MiB", "XLA temp buffers MiB"], table), ""]
    if mem.get("xla_temp_bytes_per_env") is not None:
        lines.append(f"- XLA temp bytes per env (compiled.memory_analysis(), slope): "
                     f"{mem['xla_temp_bytes_per_env']:.0f}")
    if mem.get("bytes_per_env") is not None:
        lines.append(f"- bytes per env: {mem['bytes_per_env']:.0f}")
    elif mem.get("bytes_per_env_note"):
        lines.append(f"- bytes per env: {mem['bytes_per_env_note']}")
    if mem.get("fixed_bytes") is not None:
        lines.append(f"- fixed cost (intercept): {mem['fixed_bytes'] / 2**20:.0f} MiB")
    if mem.get("stopped_by"):
        lines.append(f"- doubling stopped by: {mem['stopped_by']}")
    if mem.get("largest_num_envs") is not None:
        lines.append(f"- largest num_envs that fits: {mem['largest_num_envs']:,} ({mem.get('largest_num_envs_note')})")
    return "\n".join(lines)


def ppo_markdown(result: dict) -> str:
    rows = result["ppo"]
    s = result["settings"]
    pub = REFERENCE_PUBLISHED["ppo"]
    out = [_heading(result, "PPO frames/s"), "",
           f"Model: BatchNorm MLP hidden {s['hidden_size']} x {s['num_layers']} layers, {s['epochs']} epochs x "
           f"{s['minibatches']} minibatches, {s['steps_per_env']} steps per env per iteration. Median of "
           f"{s['iterations']} iterations after a warm-up; update = iteration - collect (one XLA program each).",
           ""]
    header = ["num_envs", "frames/iter", "collect fps", "update fps", "total fps", "iteration s", "compile s"]
    table = [[str(r["num_envs"]), str(r["frames_per_iteration"]), si(r["collect_fps"]), si(r["update_fps"]),
              si(r["total_fps"]), f"{r['iteration_s']:.3f}",
              f"{r['compile_iteration_s']:.1f} + {r['compile_collect_s']:.1f}"] for r in rows]
    table.append([f"{pub['num_envs']} (reference, {NOT_MEASURED})", "1280", si(pub["collect_fps"]), "",
                  si(pub["total_fps"]) + " (end to end)", "", ""])
    out.append(_table(header, table))
    out += ["", "compile s = iteration program + collect-only program (lower + compile)."]
    return "\n".join(out)


def scaling_markdown(result: dict) -> str:
    """PPO frames/s per device count (`python -m benchmarks.scaling`), with the ratio to one device."""
    m = result["machine"] or {}
    lines = [f"## PPO frames/s against device count ({m.get('backend', '?')}, {m.get('device_kind', '?')}, "
             f"{m.get('cpu_cores_usable', '?')} cores)", ""]
    if m.get("backend") == "cpu":
        lines += ["Fake CPU devices (`--xla_force_host_platform_device_count`) share the same cores: this shows the "
                  "overhead of the sharded program, not a speed-up.", ""]
    lines += ["| num_envs | devices | total fps | collect fps | update fps | vs 1 device (total) | compile s |",
              "|---|---|---|---|---|---|---|"]
    done = [r for r in result["rows"] if "total_fps" in r]
    for r in sorted(done, key=lambda r: (r["num_envs"], r["devices"])):
        one = next((o for o in done if o["num_envs"] == r["num_envs"] and o["devices"] == 1), None)
        ratio = f"{r['total_fps'] / one['total_fps']:.2f}x" if one else ""
        compile_s = f"{r['compile_iteration_s']:.1f} + {r['compile_collect_s']:.1f}"
        lines.append(f"| {r['num_envs']} | {r['devices']} | {r['total_fps']:.4g} | {r['collect_fps']:.4g} | "
                     f"{r['update_fps']:.4g} | {ratio} | {compile_s} |")
    for f in result["failures"]:
        lines.append(f"\ndevices={f['devices']}: failed (exit {f['returncode']})")
    return "\n".join(lines)


MARKDOWN_BY_KIND = {"env_throughput": env_markdown, "ppo_throughput": ppo_markdown, "ppo_scaling": scaling_markdown,
                    "profile_iteration": profile_report.markdown, "vs_torchtrade": vs_report.markdown}


# --------------------------------------------------------------------------------------- plots
def _log_axes(ax, ylabel: str) -> None:
    from matplotlib.ticker import FuncFormatter

    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else f"{v:g}"))
    ax.set_xlabel("num_envs")
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.3)


def plot_env(results: list[dict], path: str) -> str:
    """Log-log steps/s vs num_envs: one line per (machine, config, dtype), baselines as horizontal lines,
    the reference's published torch-vectorized points as markers."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8.5, 5.5))
    multi = len(results) > 1
    styles = ["-", "--", ":", "-."]
    for i, res in enumerate(results):
        tag = f" [{machine_label(res['machine'])}]" if multi else ""
        for c, d in _series(res["env"]):
            pts = sorted((r["num_envs"], r["steps_per_s"]) for r in res["env"] if _key(r) == (c, d))
            ax.plot(*zip(*pts, strict=True), styles[i % len(styles)], marker="o", ms=4,
                    label=f"trading_jax {c} {d}{tag}")
        for b in res.get("baselines") or []:
            color, ls = BASELINE_STYLE.get(b["name"], ("grey", ":"))
            ax.axhline(b["steps_per_s"], ls=ls, lw=1.2, color=color,
                       label=f"{b['label']}{tag}: {si(b['steps_per_s'])}/s (config {b['config']})")
    torch = REFERENCE_PUBLISHED["env"]["torch_vectorized"]
    ax.plot(list(torch), list(torch.values()), "k^", ms=7, ls="none",
            label=f"TorchTrade torch-vectorized ({NOT_MEASURED})")
    _log_axes(ax, "env steps / s")
    first = results[0]
    ax.set_title(f"Env throughput ({'several machines' if multi else machine_label(first['machine'])})", fontsize=10)
    fig.tight_layout()
    # Beside the axes (after the layout, so that the axes keep their size; the saved image grows to fit it).
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1), title=_config_legend(results),
              title_fontsize=7, alignment="left")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def _config_legend(results: list[dict]) -> str:
    """One line per config in the plot: `config a: reference: 1Hour w24, L3, levels -1/0/1`."""
    described = {r["config"]: r.get("description") or configs.describe(r["config"])
                 for res in results for r in res["env"]}
    return "\n".join(f"config {c}: {desc}" for c, desc in sorted(described.items()))


def plot_ppo(results: list[dict], path: str) -> str:
    """Log-log frames/s vs num_envs: collect, update and total per machine; the reference's published points."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 5))
    multi = len(results) > 1
    for res in results:
        tag = f" [{machine_label(res['machine'])}]" if multi else ""
        rows = sorted(res["ppo"], key=lambda r: r["num_envs"])
        x = [r["num_envs"] for r in rows]
        for key, style in (("collect_fps", "--"), ("update_fps", ":"), ("total_fps", "-")):
            ax.plot(x, [r[key] for r in rows], style, marker="o", ms=4, label=f"{key.split('_')[0]}{tag}")
    pub = REFERENCE_PUBLISHED["ppo"]
    ax.plot([pub["num_envs"]], [pub["collect_fps"]], "kv", ms=7, ls="none", label=f"reference collect ({NOT_MEASURED})")
    ax.plot([pub["num_envs"]], [pub["total_fps"]], "k^", ms=7, ls="none",
            label=f"reference end to end ({NOT_MEASURED})")
    _log_axes(ax, "frames / s")
    ax.set_title(f"PPO throughput ({'several machines' if multi else machine_label(results[0]['machine'])})",
                 fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.report", description=__doc__.split("\n\n")[0])
    p.add_argument("files", nargs="+", help="JSON files written by env_throughput / ppo_throughput / scaling")
    p.add_argument("--out", default=DEFAULT_OUT)
    p.add_argument("--stem", default="combined")
    args = p.parse_args(argv)
    results = [read_json(f) for f in args.files]
    env = [r for r in results if r["kind"] == "env_throughput"]
    ppo = [r for r in results if r["kind"] == "ppo_throughput"]
    for path, r in zip(args.files, results, strict=True):
        if r["kind"] in MARKDOWN_BY_KIND:
            print(MARKDOWN_BY_KIND[r["kind"]](r), end="\n\n")
        else:
            print(f"skipping {path}: no report for results of kind {r['kind']!r}", file=sys.stderr)
    if env:
        print("wrote", plot_env(env, os.path.join(args.out, f"{args.stem}-env.png")), file=sys.stderr)
    if ppo:
        print("wrote", plot_ppo(ppo, os.path.join(args.out, f"{args.stem}-ppo.png")), file=sys.stderr)


if __name__ == "__main__":
    main()

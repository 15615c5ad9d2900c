"""Latency study: closed-loop success as the policy's delay grows, per chunk-execution strategy.

Every cell is one `action_diffusion_bringup.evaluate` run through the nodes (sim_node ->
unified_state_node -> policy_node -> action_executor), the delay injected in the policy node
(`--added-delay-steps`: each chunk is held back that many control steps after its
observation, on top of the real inference time). Writes, atomically:

- OUT/latency_study.json: `rows` of {policy, strategy, delay_steps, episodes, successes,
  success_rate, wilson95, max_step, mean_jerk, hold_fraction, latency_p50_ms}, with the
  commit and the command;
- OUT/latency_study.md: the same as a table;
- OUT/latency_study.png: success against delay, one line per policy and strategy.

Each cell's own evaluate JSON stays under OUT/latency/ (a rerun skips the cells it has).

    python benchmarks/latency_study.py \
        --policy lowdim=src/action_diffusion_bringup/checkpoints/transfer_cube \
        [--policy camera=DIR] [--delays 0 2 4 8 12] [--seeds 1000:1050] [--out results] \
        [--strategies temporal_ensembling receding_horizon rtc rtc:identity]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from action_diffusion_bringup.report import wilson_interval


def run_cell(name, checkpoint, strategy, delay, seeds, out_dir: Path) -> dict:
    """``strategy`` ``rtc:vjp`` / ``rtc:identity`` picks the guidance; plain ``rtc`` is the
    policy node's default (identity since this was added; the first reduced study's ``rtc``
    cells ran vjp, the only one then)."""
    base, _, guidance = strategy.partition(":")
    out = out_dir / f"eval_{name}_{strategy.replace(':', '_')}_d{delay}.json"
    if not out.exists():
        subprocess.run(
            [sys.executable, "-m", "action_diffusion_bringup.evaluate", "--checkpoint",
             checkpoint, "--strategy", base, "--seeds", seeds, "--added-delay-steps",
             str(delay), "--out", str(out), *(["--rtc-guidance", guidance] if guidance else [])],
            check=True,
        )  # fmt: skip
    report = json.loads(out.read_text())
    n, k = report["episodes"], report["successes"]
    lo, hi = wilson_interval(k, n)
    executor = report.get("executor") or {}
    published = int(executor.get("commands_published") or 0)
    holds = int(executor.get("hold_ticks") or 0)
    smooth = report.get("smoothness") or {}
    return {
        "policy": name,
        "checkpoint_id": report["policy"]["checkpoint_id"],
        "strategy": strategy,
        "delay_steps": delay,
        "episodes": n,
        "successes": k,
        "success_rate": round(k / n, 4) if n else None,
        "wilson95": [round(lo, 4), round(hi, 4)],
        "max_step": smooth.get("max_step"),
        "mean_jerk": smooth.get("mean_jerk"),
        "hold_fraction": round(holds / published, 4) if published else None,
        "latency_p50_ms": report["latency_ms"]["p50"],
        "file": str(out),
    }


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def table(rows) -> str:
    lines = [
        "| policy | strategy | delay (steps) | success | Wilson 95 % | max step | mean jerk "
        "| held ticks | chunk latency p50 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lo, hi = r["wilson95"]
        hold = f"{r['hold_fraction']:.1%}" if r["hold_fraction"] is not None else "n/a"
        lat = f"{r['latency_p50_ms']:.0f} ms" if r["latency_p50_ms"] is not None else "n/a"
        lines.append(
            f"| {r['policy']} | {r['strategy']} | {r['delay_steps']} | {r['successes']}/"
            f"{r['episodes']} | {lo:.0%}-{hi:.0%} | {r['max_step']} | {r['mean_jerk']} | "
            f"{hold} | {lat} |"
        )
    return "\n".join(lines) + "\n"


def plot(rows, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for key in sorted({(r["policy"], r["strategy"]) for r in rows}):
        cells = sorted((r for r in rows if (r["policy"], r["strategy"]) == key),
                       key=lambda r: r["delay_steps"])  # fmt: skip
        x = [r["delay_steps"] for r in cells]
        y = [r["success_rate"] for r in cells]
        err = [[r["success_rate"] - r["wilson95"][0] for r in cells],
               [r["wilson95"][1] - r["success_rate"] for r in cells]]  # fmt: skip
        ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=f"{key[0]} {key[1]}")
    ax.set_xlabel("injected delay (control steps, 20 ms each)")
    ax.set_ylabel("closed-loop success")
    ax.set_ylim(0, 1.05)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=120)
    tmp.replace(path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--policy", action="append", required=True, metavar="NAME=CHECKPOINT")
    parser.add_argument("--delays", type=int, nargs="+", default=[0, 2, 4, 8, 12])
    parser.add_argument("--strategies", nargs="+",
                        default=["temporal_ensembling", "receding_horizon", "rtc"])  # fmt: skip
    parser.add_argument("--seeds", default="1000:1050")
    parser.add_argument("--out", type=Path, default=Path("results"))
    args = parser.parse_args(argv)
    policies = []
    for item in args.policy:
        name, sep, checkpoint = item.partition("=")
        if not sep or not name or not Path(checkpoint).is_dir():
            parser.error(f"--policy {item!r}: give NAME=CHECKPOINT_DIR (an existing directory)")
        policies.append((name, checkpoint))
    cells_dir = args.out / "latency"
    cells_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, checkpoint in policies:
        for strategy in args.strategies:
            for delay in args.delays:
                rows.append(run_cell(name, checkpoint, strategy, delay, args.seeds, cells_dir))
                print(json.dumps(rows[-1]), flush=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()  # fmt: skip
    result = {
        "commit": commit,
        "command": "python benchmarks/latency_study.py " + " ".join(
            argv if argv is not None else sys.argv[1:]),
        "seeds": args.seeds,
        "cpu_count": os.cpu_count(),
        "rows": rows,
    }
    write_atomic(args.out / "latency_study.json", json.dumps(result, indent=1) + "\n")
    write_atomic(args.out / "latency_study.md",
                 f"# Latency study\n\n`{result['command']}` at {commit}, seeds {args.seeds}\n\n"
                 + table(rows))  # fmt: skip
    plot(rows, args.out / "latency_study.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())

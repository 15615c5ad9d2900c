"""Turn closed-loop evaluation JSON files into one report: `report.json` and a Markdown table.

Each input is what `action_diffusion_bringup.evaluate` writes for one (checkpoint, task,
strategy) run. Offline-evaluation reports (`evaluate_offline`) found beside them are summarized
in a second table, so the closed-loop and offline figures of a checkpoint stand side by side.

    python -m action_diffusion_bringup.report results/eval_*.json --out results/
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path


def load_runs(paths: list[Path]) -> tuple[list[dict], list[dict]]:
    """Split JSON files into closed-loop runs and offline-evaluation reports."""
    closed, offline = [], []
    for path in paths:
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise SystemExit(f"report: cannot read {path}: {error}") from error
        data.setdefault("_file", str(path))
        if data.get("kind") == "closed_loop":
            closed.append(data)
        elif "per_slot" in data and "mae" in data:
            offline.append(data)
        else:
            raise SystemExit(
                f"report: {path} is neither a closed-loop result (kind: closed_loop) nor an "
                "offline-evaluation report (per_slot)"
            )
    return closed, offline


def _fmt_ms(value) -> str:
    return "-" if value is None else f"{value:.0f}"


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a success rate (Wilson 1927)."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def observation_label(policy: dict) -> str:
    """What the policy read; object poses are labelled privileged sim state. Result files
    written before env_state_dim was recorded: a policy without cameras read object poses."""
    cameras = list(policy.get("camera_names") or [])
    env_dim = policy.get("env_state_dim")
    if env_dim is None:
        env_dim = 0 if cameras else 1
    parts = [*cameras, "state"]
    if env_dim:
        parts.append("object pose (privileged sim state)")
    return " + ".join(parts)


def closed_loop_table(runs: list[dict]) -> list[str]:
    lines = [
        "| task | policy | observation | executor strategy | success | Wilson 95 % | episodes "
        "| chunk latency p50 / p95 (ms) | checkpoint | result file |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(
        runs, key=lambda r: (r["task"], r["policy"]["name"], r["strategy"], r["_file"])
    ):
        lat = r.get("latency_ms") or {}
        lo, hi = wilson_interval(int(r["successes"]), int(r["episodes"]))
        lines.append(
            f"| {r['task']} | {r['policy']['name']} | {observation_label(r['policy'])} "
            f"| {r['strategy']} | **{r['success_rate']:.0%}** ({r['successes']}/{r['episodes']}) "
            f"| {lo:.0%}-{hi:.0%} "
            f"| seeds {r['seeds'][0]}..{r['seeds'][-1]} "
            f"| {_fmt_ms(lat.get('p50'))} / {_fmt_ms(lat.get('p95'))} "
            f"| `{r['policy']['checkpoint_id'][:12]}` | {Path(r['_file']).name} |"
        )
    return lines


def offline_table(reports: list[dict]) -> list[str]:
    """One row per `evaluate_offline` report.json (its keys: mae, rmse, mae_per_horizon_step)."""
    lines = [
        "| checkpoint | held-out data | predictions | MAE (all slots, all steps) | RMSE "
        "| MAE at step 0 | MAE at last step |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in reports:
        by_step = r.get("mae_per_horizon_step") or [float("nan")]
        source = ", ".join(Path(str(p)).name for p in r.get("input") or [r.get("data", "?")])
        lines.append(
            f"| `{str(r.get('checkpoint_id', '?'))[:12]}` | {source} ({r.get('episodes', '?')} "
            f"episodes) | {r.get('steps', '?')} | {r['mae']:.4f} | {r['rmse']:.4f} "
            f"| {by_step[0]:.4f} | {by_step[-1]:.4f} |"
        )
    return lines


def render_markdown(closed: list[dict], offline: list[dict]) -> str:
    out = ["# Closed-loop results", ""]
    if closed:
        commits = sorted({r.get("commit", "?") for r in closed})
        out += closed_loop_table(closed)
        out += ["", f"Commit(s): {', '.join(commits)}", "", "Commands:", ""]
        out += [f"    {r['command']}" for r in closed if r.get("command")]
    else:
        out.append("No closed-loop runs.")
    if offline:
        out += ["", "# Offline check on held-out demonstrations", ""]
        out += offline_table(offline)
    return "\n".join(out) + "\n"


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(text)
    os.replace(tmp, path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="report", description=__doc__.split("\n")[0])
    parser.add_argument("inputs", nargs="+", type=Path, help="evaluation JSON files")
    parser.add_argument("--out", type=Path, default=Path("results"), help="output directory")
    args = parser.parse_args(argv)
    missing = [str(p) for p in args.inputs if not p.is_file()]
    if missing:
        print(f"report: no such file(s): {', '.join(missing)}", file=sys.stderr)
        return 2
    closed, offline = load_runs(args.inputs)
    args.out.mkdir(parents=True, exist_ok=True)
    write_atomic(
        args.out / "report.json",
        json.dumps({"closed_loop": closed, "offline": offline}, indent=1) + "\n",
    )
    markdown = render_markdown(closed, offline)
    write_atomic(args.out / "README.md", markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Figures of one end-to-end pipeline run (scripts/pipeline.sh), as JSON.

The pipeline is far too long to re-run inside a benchmark, so this reads what the run recorded:
wall time per stage (WORK/timing_<task>.jsonl), training throughput (each run's log.csv) and
the policy's chunk latency in closed loop (the evaluation JSONs, from ActionChunk's
inference_latency field).

    python benchmarks/pipeline_bench.py [--work artifacts/pipeline] [--results results]
"""

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np


def stage_times(work: Path) -> dict:
    out = {}
    for path in sorted(work.glob("timing_*.jsonl")):
        task = path.stem.removeprefix("timing_")
        for line in path.read_text().splitlines():
            row = json.loads(line)
            out.setdefault(task, {})[row["stage"]] = row["wall_s"]  # the last run of a stage wins
    return out


def training(work: Path) -> dict:
    out = {}
    for log in sorted(work.glob("runs/*/log.csv")):
        with open(log) as f:
            rows = list(csv.DictReader(f))
        if not rows:
            continue
        rates = np.array([float(r["samples_per_s"]) for r in rows])
        out[log.parent.name] = {
            "steps": int(rows[-1]["step"]),
            "samples_per_s_median": round(float(np.median(rates)), 1),
            "wall_s": round(float(rows[-1]["elapsed_s"]), 1),
            "final_train_loss": float(rows[-1]["train_loss"]),
        }
    return out


def closed_loop(results: Path) -> dict:
    out = {}
    for path in sorted(results.glob("eval_*.json")):
        r = json.loads(path.read_text())
        out[path.stem] = {
            "success_rate": r["success_rate"],
            "episodes": r["episodes"],
            "chunk_latency_ms_p50": r["latency_ms"]["p50"],
            "chunk_latency_ms_p95": r["latency_ms"]["p95"],
            "chunks": r["latency_ms"]["chunks"],
            "wall_s": r["wall_s"],
        }
    return out


BUDGET_S = 90 * 60  # one task's collect -> dataset -> train on a 2-core machine (issue 13)
PIPELINE_STAGES = ("collect", "dataset")  # plus every train_<policy> stage


def budget(stages: dict) -> dict:
    """Per task and trained policy: collect + dataset + its training, against the budget."""
    out = {}
    for task, times in stages.items():
        base = sum(times.get(s, 0.0) for s in PIPELINE_STAGES)
        for stage, wall in times.items():
            if stage.startswith("train_"):
                total = base + wall
                out[f"{task}/{stage.removeprefix('train_')}"] = {
                    "collect_dataset_train_s": round(total, 1),
                    "budget_s": BUDGET_S, "within_budget": total <= BUDGET_S}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=Path("artifacts/pipeline"))
    parser.add_argument("--results", type=Path, default=Path("results"))
    args = parser.parse_args()
    if not args.work.is_dir():
        print(
            f"pipeline_bench: no pipeline run under {args.work}; run `make pipeline` first",
            file=sys.stderr,
        )
        return 2
    print(
        json.dumps(
            {
                "stage_wall_s": stage_times(args.work),
                "budget": budget(stage_times(args.work)),
                "training": training(args.work),
                "closed_loop": closed_loop(args.results),
            },
            indent=1,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

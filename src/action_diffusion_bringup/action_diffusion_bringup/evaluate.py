"""Closed-loop evaluation of a checkpoint in the sim, through the ROS nodes.

Starts the `sim` bringup with the policy (sim + unified_state_node + policy_node +
action_executor: the nodes a real robot runs, plus the sim), resets the sim with each seed
through the sim episode client (`sim_client.SimClient`), and counts the episodes that reach the
task's success. Writes one JSON file per run:

    python -m action_diffusion_bringup.evaluate --checkpoint CKPT --task transfer_cube \
        --seeds 1000:1050 --strategy temporal_ensembling --out results/eval_tc_te.json

Seeds are taken from a range the demonstrations did not use (the collector starts at 0).
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from action_diffusion_bringup import description
from action_diffusion_bringup.description import BringupError
from action_diffusion_bringup.report import observation_label, write_atomic
from action_diffusion_bringup.run import BringupRunner, claim_private_domain
from action_diffusion_bringup.sim_client import (
    EPISODE_STEPS,
    SimClient,
    sim_overrides,
    with_parameters,
)


def parse_seeds(text: str) -> list[int]:
    """'1000:1050' (end exclusive) or '3,5,8'."""
    try:
        if ":" in text:
            start, end = (int(v) for v in text.split(":"))
            seeds = list(range(start, end))
        else:
            seeds = [int(v) for v in text.split(",") if v]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--seeds {text!r}: expected START:END or a comma-separated list"
        ) from None
    if not seeds:
        raise argparse.ArgumentTypeError(f"--seeds {text!r} selects no seed")
    return seeds


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def policy_summary(checkpoint: Path) -> dict:
    """What the report says about the policy, read from the checkpoint's config.json."""
    from action_diffusion_policy.checkpoint import read_checkpoint_config

    config = read_checkpoint_config(checkpoint)
    model = config["policy_config"]
    cameras = list(model.get("camera_names") or [])
    return {
        "checkpoint": str(checkpoint),
        "checkpoint_id": str(config["checkpoint_id"]),
        "name": f"{model['backbone']}+{model['head']}",
        "observation": observation_label(
            {"camera_names": cameras, "env_state_dim": int(model.get("env_state_dim") or 0)}),
        "camera_names": cameras,
        "env_state_dim": int(model.get("env_state_dim") or 0),
        "sampler": model.get("sampler"),
        "num_inference_steps": model.get("num_inference_steps"),
        "horizon": model.get("horizon"),
    }


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--task", choices=description.TASKS, default="transfer_cube")
    parser.add_argument("--seeds", type=parse_seeds, default=parse_seeds("1000:1050"))
    parser.add_argument("--strategy", choices=description.STRATEGIES, default="temporal_ensembling")
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    parser.add_argument(
        "--real-time-factor",
        type=float,
        default=1.0,
        help="sim seconds per wall second at most; 1 = as on a real robot",
    )
    parser.add_argument(
        "--num-inference-steps",
        type=int,
        default=0,
        help="sampler steps of the policy node; 0 = the checkpoint's",
    )
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=0,
        help="intra-op threads of the policy node; 0 = torch's default",
    )
    parser.add_argument(
        "--added-delay-steps",
        type=int,
        default=0,
        help="control steps the policy node holds each chunk back after its observation "
        "(an injected latency, through the real nodes)",
    )
    parser.add_argument(
        "--rtc-guidance",
        choices=("vjp", "identity"),
        default="identity",
        help="with --strategy rtc: the gradient-free guidance (the policy node's default) or "
        "the paper's (vjp)",
    )
    parser.add_argument("--episode-timeout", type=float, default=300.0)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    options = parse_args(argv)
    checkpoint = options.checkpoint.resolve()
    try:
        specs = description.describe(
            "sim",
            {
                "task": options.task,
                "policy": "true",
                "checkpoint": str(checkpoint),
                "strategy": options.strategy,
            },
        )
        domain = claim_private_domain()
    except BringupError as error:
        print(f"[evaluate] error: {error}", file=sys.stderr)
        return 2
    policy = policy_summary(checkpoint)
    steps = EPISODE_STEPS[options.task]
    # Render only the cameras the policy looks at (none for a low-dim policy).
    specs = with_parameters(
        specs, "sim", **sim_overrides(policy["camera_names"], options.real_time_factor, steps)
    )
    if options.num_inference_steps:
        specs = with_parameters(specs, "policy", num_inference_steps=options.num_inference_steps)
        policy["num_inference_steps"] = options.num_inference_steps
    if options.torch_threads:
        specs = with_parameters(specs, "policy", torch_threads=options.torch_threads)
        policy["torch_threads"] = options.torch_threads
    if options.strategy == "rtc":
        specs = with_parameters(specs, "policy", rtc_guidance=options.rtc_guidance)
        policy["rtc_guidance"] = options.rtc_guidance
    if options.added_delay_steps:
        from unified_action_space import load_embodiment

        sim = load_embodiment(description.SIM_EMBODIMENT, kinematics=False)
        period = 1.0 / sim.control_frequency
        specs = with_parameters(specs, "policy", added_delay=options.added_delay_steps * period)
    out = options.out
    out.parent.mkdir(parents=True, exist_ok=True)
    log_path = out.with_suffix(".nodes.log")
    print(
        f"[evaluate] {policy['name']} ({policy['observation']}) on {options.task}, "
        f"{options.strategy}, {len(options.seeds)} seeds {options.seeds[0]}..{options.seeds[-1]}, "
        f"ROS domain {domain}"
    )
    from tqdm import tqdm

    episodes = []
    start = time.monotonic()
    with (
        open(log_path, "w") as log,
        BringupRunner(specs, output=log, stop_timeout=10.0) as runner,
        SimClient(runner, policy=True, node_name="evaluate") as client,
    ):
        try:
            client.wait_until(client.ready, 300.0, "the nodes to be ready")
            bar = tqdm(options.seeds, desc="episodes", unit="ep")
            for i, seed in enumerate(bar):
                result = client.run_episode(i + 1, seed, steps, options.episode_timeout)
                episodes.append(
                    {
                        "seed": result.seed,
                        "success": result.success,
                        "reward": result.reward,
                        "max_reward": result.max_reward,
                        "steps": result.steps,
                        "wall_s": result.wall_s,
                        **client.smoothness(),
                    }
                )
                ok = sum(e["success"] for e in episodes)
                bar.set_postfix(success=f"{ok}/{len(episodes)}")
        except (RuntimeError, TimeoutError) as error:
            print(f"[evaluate] error: {error}; node output in {log_path}", file=sys.stderr)
            return 1
    latencies = np.asarray(client.latencies) * 1000.0
    successes = sum(e["success"] for e in episodes)
    report = {
        "kind": "closed_loop",
        "task": options.task,
        "strategy": options.strategy,
        "added_delay_steps": options.added_delay_steps,
        "policy": policy,
        "seeds": options.seeds,
        "episodes": len(episodes),
        "successes": successes,
        "success_rate": successes / len(episodes),
        "mean_reward": float(np.mean([e["reward"] for e in episodes])),
        "latency_ms": {
            "p50": float(np.percentile(latencies, 50)) if latencies.size else None,
            "p95": float(np.percentile(latencies, 95)) if latencies.size else None,
            "chunks": int(latencies.size),
        },
        "executor": {  # its own counters over the whole run (last /diagnostics)
            k: client.executor_diagnostics.get(k)
            for k in ("commands_published", "hold_ticks", "chunks_accepted")
        },
        "smoothness": {
            "max_step": max((e["max_step"] for e in episodes if e["max_step"] is not None),
                            default=None),
            "mean_jerk": (float(np.mean([e["mean_jerk"] for e in episodes
                                         if e["mean_jerk"] is not None]))
                          if any(e["mean_jerk"] is not None for e in episodes) else None),
        },
        "real_time_factor": options.real_time_factor,
        "wall_s": round(time.monotonic() - start, 1),
        "commit": git_commit(),
        "command": "python -m action_diffusion_bringup.evaluate "
        + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])),
        "per_episode": episodes,
    }
    write_atomic(out, json.dumps(report, indent=1) + "\n")
    print(
        f"[evaluate] {options.task} {policy['name']} {options.strategy}: success "
        f"{successes}/{len(episodes)} = {successes / len(episodes):.0%}; "
        f"chunk latency p50 {report['latency_ms']['p50'] or float('nan'):.0f} ms -> {out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Closed loop without ROS: the sim, the policy and the executor's ensembler in one process.

A diagnostic beside `action_diffusion_bringup.evaluate` (which goes through the nodes): the
policy is called every `--every` control steps with zero latency, so the gap between the two
success rates is what the runtime (DDS, scheduling, latency on a busy CPU) costs.

    python benchmarks/closed_loop_in_process.py CHECKPOINT --seeds 50 [--every 5] \
        [--task insertion] [--first-seed 2000] [--latency 4]

Camera checkpoints get the sim's camera renders (240x320, as sim_node publishes them) through
the same resize as recorded frames (`data.images.resize`). Also the quick way to compare
checkpoints on validation seeds (e.g. --first-seed 2000) before the reported run through the
nodes on 1000-1049. Prints JSON.
"""

import argparse
import json
import sys
import time

import torch

from action_diffusion_bringup.sim_client import EPISODE_STEPS
from action_diffusion_bringup.sim_probe import RENDER_SIZE, run_episode
from action_diffusion_policy.checkpoint import load_policy
from aloha_sim.env import AlohaSimEnv
from unified_action_space import load_embodiment


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--seeds", type=int, default=50, help="number of seeds")
    parser.add_argument("--first-seed", type=int, default=1000, help="1000: as evaluate")
    parser.add_argument("--task", default="transfer_cube", choices=sorted(EPISODE_STEPS))
    parser.add_argument("--every", type=int, default=5, help="control steps between chunks")
    parser.add_argument("--strategy", default="temporal_ensembling")
    parser.add_argument(
        "--latency", type=int, default=0, help="control steps from observation to chunk arrival"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--k", type=float, default=0.01, help="temporal-ensembling k")
    parser.add_argument("--steps", type=int, default=0, help="sampler steps; 0 = the checkpoint's")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    policy = load_policy(args.checkpoint)
    if args.steps:
        policy.head.num_inference_steps = args.steps
    if policy.spec.n_obs_steps > 1 and policy.spec.camera_names:
        print("closed_loop_in_process: camera checkpoints with n_obs_steps > 1 are not "
              "supported (one frame per chunk is rendered)", file=sys.stderr)
        return 2
    embodiment = load_embodiment("aloha_sim")
    cameras = list(policy.spec.camera_names)
    env = AlohaSimEnv(args.task, render_size=RENDER_SIZE if cameras else None,
                      cameras=cameras or ("cam_high",))
    start = time.perf_counter()
    results = [
        run_episode(
            env, policy, embodiment, args.first_seed + i, args.every, args.strategy,
            args.latency, args.k,
        )
        for i in range(args.seeds)
    ]
    successes = sum(ok for ok, _ in results)
    print(
        json.dumps(
            {
                "checkpoint_id": policy.spec.checkpoint_id,
                "task": args.task,
                "camera_names": cameras,
                "env_state_dim": policy.spec.env_state_dim,
                "seeds": [args.first_seed, args.first_seed + args.seeds - 1],
                "every": args.every,
                "strategy": args.strategy,
                "latency_steps": args.latency,
                "ensembling_k": args.k,
                "sampler_steps": policy.head.num_inference_steps,
                "successes": successes,
                "success_rate": successes / len(results),
                "rewards": [r for _, r in results],
                "wall_s": round(time.perf_counter() - start, 1),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

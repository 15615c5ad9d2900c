"""Closed loop without ROS: the sim, the policy and the executor's ensembler in one process.

A diagnostic beside `action_diffusion_bringup.evaluate` (which goes through the nodes): the
policy is called every `--every` control steps with zero latency, so the gap between the two
success rates is what the runtime (DDS, scheduling, latency on a busy CPU) costs.

    python benchmarks/closed_loop_in_process.py CHECKPOINT --seeds 50 [--every 5]

Low-dimensional (state + object pose) transfer-cube checkpoints only. Prints JSON.
"""

import argparse
import json
import sys
import time

import numpy as np
import torch

from action_diffusion_policy.checkpoint import load_policy
from action_diffusion_policy.runtime.ensembler import ChunkEnsembler, EnsemblerConfig
from action_diffusion_policy.types import Observation
from aloha_sim.env import ARMS, JOINT_NAMES, AlohaSimEnv
from unified_action_space import load_embodiment

STEPS = 400
PERIOD = 0.02


def run_episode(
    env, policy, embodiment, seed, every, strategy, latency=0, k=0.01
) -> tuple[bool, int]:
    spec = policy.spec
    env.reset(seed)
    ensembler = ChunkEnsembler(
        embodiment.action_slots,
        EnsemblerConfig(strategy=strategy, ensembling_k=k),
        horizon=spec.horizon,
    )
    states, poses = [], []
    hold = None
    pending = []  # (step it reaches the executor, stamp, actions): a policy that thinks
    for step in range(STEPS):
        joints = {a: (JOINT_NAMES, env.joint_positions(a), env.joint_velocities(a)) for a in ARMS}
        values, mask = embodiment.state_from_joint_states(joints)
        states.append(values)
        poses.append(env.object_poses().astype(np.float32))
        if step % every == 0:
            window = [max(0, len(states) - spec.n_obs_steps + i) for i in range(spec.n_obs_steps)]
            obs = Observation(
                images={},
                state=np.stack([states[i] for i in window]),
                state_mask=mask,
                env_state=np.stack([poses[i] for i in window]) if spec.env_state_dim else None,
                control_frequency=1.0 / PERIOD,
            )
            pending.append((step + latency, step * PERIOD, policy.predict_chunk(obs)))
        while pending and pending[0][0] <= step:
            _, stamp, actions = pending.pop(0)
            ensembler.add_chunk(stamp, PERIOD, spec.action_slots, actions)
        action, _ = ensembler.action_at(step * PERIOD)
        if action is None:  # the first chunk is still on its way: hold where the arms are
            action = np.asarray(values)[spec.action_slots] if hold is None else hold
        hold = action
        commands = embodiment.commands_from_actions(action[None], slot_indices=spec.action_slots)
        env.step({arm: c[0] for arm, c in commands.items()})
        if env.success:
            break
    return bool(env.success), int(env.reward)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--seeds", type=int, default=50, help="seeds 1000.. (as evaluate)")
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
    if policy.spec.camera_names:
        print("closed_loop_in_process: low-dimensional checkpoints only", file=sys.stderr)
        return 2
    embodiment = load_embodiment("aloha_sim")
    env = AlohaSimEnv("transfer_cube", render_size=None)
    start = time.perf_counter()
    results = [
        run_episode(
            env, policy, embodiment, 1000 + i, args.every, args.strategy, args.latency, args.k
        )
        for i in range(args.seeds)
    ]
    successes = sum(ok for ok, _ in results)
    print(
        json.dumps(
            {
                "checkpoint_id": policy.spec.checkpoint_id,
                "seeds": [1000, 1000 + args.seeds - 1],
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

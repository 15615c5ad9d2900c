"""Does a camera checkpoint read its image? Prints JSON (see action_diffusion_bringup.sim_probe).

    python benchmarks/image_sensitivity.py CHECKPOINT [--task transfer_cube] [--seeds 2000 2001]
"""

import argparse
import json
import sys

import torch

from action_diffusion_bringup.sim_probe import RENDER_SIZE, pair_report
from action_diffusion_policy.checkpoint import load_policy
from aloha_sim.env import AlohaSimEnv
from unified_action_space import load_embodiment


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--task", default="transfer_cube")
    ap.add_argument("--seeds", type=int, nargs="+", default=[2000, 2001, 2002, 2003])
    ap.add_argument("--steps-in", type=int, default=0,
                    help="expert steps after the reset before the probe (0: at the reset)")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    policy = load_policy(a.checkpoint)
    if not policy.spec.camera_names:
        print("image_sensitivity: the checkpoint has no camera", file=sys.stderr)
        return 2
    embodiment = load_embodiment("aloha_sim")
    env = AlohaSimEnv(a.task, render_size=RENDER_SIZE, cameras=policy.spec.camera_names)
    pairs = [pair_report(policy, env, embodiment, a.seeds[i], a.seeds[i + 1], a.steps_in)
             for i in range(0, len(a.seeds) - 1, 2)]
    print(json.dumps({"checkpoint_id": policy.spec.checkpoint_id, "task": a.task,
                      "pairs": pairs}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Probe a camera policy at the sim's reset states: does it read its image?

At the reset of a seed (arms at home, objects drawn from the seed) the policy's first chunk with
the seed's own top-camera image is compared with the chunk under another seed's image, with
the sampler's spread, and with the scripted expert's first commands of both seeds. Used by
``benchmarks/image_sensitivity.py`` and the shipped camera checkpoint's test.
"""

from __future__ import annotations

import numpy as np

from action_diffusion_bringup.sim_client import EPISODE_STEPS
from action_diffusion_policy.data.images import resize
from action_diffusion_policy.evaluation.image_sensitivity import image_sensitivity, noises
from action_diffusion_policy.runtime.ensembler import ChunkEnsembler, EnsemblerConfig
from action_diffusion_policy.types import Observation
from aloha_sim.env import ARMS, JOINT_NAMES
from aloha_sim.expert import ScriptedExpert

RENDER_SIZE = (240, 320)  # sim_node's default camera size
PERIOD = 0.02  # s per control step (50 Hz)


def reset_observation(env, embodiment, policy, seed: int, steps_in: int = 0
                      ) -> tuple[Observation, np.ndarray]:
    """The observation ``steps_in`` scripted-expert steps after the reset of ``seed`` (0: at
    the reset) and the expert's next ``horizon`` actions from there."""
    spec = policy.spec
    env.reset(seed)
    expert = ScriptedExpert(env.task)
    expert.reset(seed)

    def expert_step(step):
        cmd = expert.act(step, {a: env.joint_positions(a) for a in ARMS}, env.object_poses())
        env.step(cmd)
        return cmd

    for step in range(steps_in):
        expert_step(step)
    images = {c: resize(env.render(c), tuple(spec.image_size))[None] for c in spec.camera_names}
    joints = {a: (JOINT_NAMES, env.joint_positions(a), env.joint_velocities(a)) for a in ARMS}
    values, mask = embodiment.state_from_joint_states(joints)
    obs = Observation(images=images, state=np.repeat(values[None], spec.n_obs_steps, 0),
                      state_mask=mask, env_state=None, control_frequency=50.0)
    actions = [np.asarray(embodiment.actions_from_commands(expert_step(steps_in + i)))
               [spec.action_slots] for i in range(spec.horizon)]
    return obs, np.stack(actions)


def pair_report(policy, env, embodiment, seed_a: int, seed_b: int, steps_in: int = 0) -> dict:
    obs_a, expert_a = reset_observation(env, embodiment, policy, seed_a, steps_in)
    obs_b, expert_b = reset_observation(env, embodiment, policy, seed_b, steps_in)
    sens = image_sensitivity(policy, obs_a, obs_a.images, obs_b.images)
    noise = noises(policy, 1, seed=1)[0]
    chunk_a = policy.predict_chunk(obs_a, noise)
    chunk_b = policy.predict_chunk(obs_b, noise)

    def dist(x, y):
        return float(np.abs(x - y).mean())

    return {
        "seeds": [seed_a, seed_b],
        "steps_in": steps_in,
        **sens,
        "first_chunk_difference": dist(chunk_a, chunk_b),
        "expert_first_chunk_difference": dist(expert_a, expert_b),
        "own_expert_closer": bool(dist(chunk_a, expert_a) < dist(chunk_a, expert_b)
                                  and dist(chunk_b, expert_b) < dist(chunk_b, expert_a)),
    }


def run_episode(
    env, policy, embodiment, seed, every, strategy, latency=0, k=0.01, max_steps=None
) -> tuple[bool, int]:
    """One episode in one process: the policy every ``every`` control steps, each chunk
    reaching the ensembler ``latency`` steps after its observation. Camera checkpoints get the
    sim's renders through the dataset's resize. Stops at success or after ``max_steps``."""
    spec = policy.spec
    env.reset(seed)
    ensembler = ChunkEnsembler(
        embodiment.action_slots,
        EnsemblerConfig(strategy=strategy, ensembling_k=k),
        horizon=spec.horizon,
    )
    states, poses = [], []
    hold = None
    last = None  # (step, actions) of the newest chunk computed (real-time chunking's prefix)
    pending = []  # (step it reaches the executor, stamp, actions): a policy that thinks
    for step in range(max_steps or EPISODE_STEPS[env.task]):
        joints = {a: (JOINT_NAMES, env.joint_positions(a), env.joint_velocities(a)) for a in ARMS}
        values, mask = embodiment.state_from_joint_states(joints)
        states.append(values)
        poses.append(env.object_poses().astype(np.float32))
        if step % every == 0:
            window = [max(0, len(states) - spec.n_obs_steps + i) for i in range(spec.n_obs_steps)]
            obs = Observation(
                images={
                    cam: resize(env.render(cam), tuple(spec.image_size))[None]
                    for cam in spec.camera_names
                },
                state=np.stack([states[i] for i in window]),
                state_mask=mask,
                env_state=np.stack([poses[i] for i in window]) if spec.env_state_dim else None,
                control_frequency=1.0 / PERIOD,
            )
            if strategy == "rtc" and last is not None:
                # What the executor runs meanwhile: the newest chunk computed so far, from now.
                prefix = last[1][step - last[0]:]
                # s: the steps each chunk runs before the next arrives (the inference period).
                actions = (policy.predict_chunk(obs, prefix=prefix, delay=latency,
                                                execution_horizon=every)
                           if len(prefix) else policy.predict_chunk(obs))  # fmt: skip
            else:
                actions = policy.predict_chunk(obs)
            last = (step, actions)
            pending.append((step + latency, step * PERIOD, actions))
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


def gripper_xy(env, arm: str = "right") -> np.ndarray:
    """World (x, y) of ``arm``'s gripper link now."""
    return env.data.xpos[env.arms[arm].gripper_body][:2].copy()

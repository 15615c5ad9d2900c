"""Does a checkpoint fit the robot it is about to drive? Checked before the first inference."""

from __future__ import annotations

import numpy as np


def policy_fit_problems(
    spec,
    embodiment_name: str,
    action_slots,
    state_mask,
    camera_topics,
    env_state_topic: str = "",
    embodiment_cameras: dict[str, str] | None = None,
) -> list[str]:
    """Reasons the checkpoint (``PolicySpec``) cannot drive this embodiment; empty when it can.

    The chunk must carry every slot the robot is commanded on, the state the policy reads must
    be filled by the robot, one camera topic per checkpoint camera, and an env-state source for
    low-dimensional checkpoints that read privileged object poses. ``embodiment_cameras`` (the
    embodiment's camera table, given when no topics were set by hand): every checkpoint camera
    must be one the robot publishes.
    """
    problems = []
    have = set(int(s) for s in spec.action_slots)
    missing = [int(s) for s in np.asarray(action_slots) if int(s) not in have]
    if missing:
        problems.append(
            f"checkpoint {spec.checkpoint_id or '?'} predicts slots {sorted(have)} but "
            f"embodiment {embodiment_name!r} is commanded on {missing} as well; train on this "
            "embodiment's action slots or pick the embodiment the checkpoint was trained for "
            f"({spec.embodiments or 'unknown'})"
        )
    mask = np.asarray(state_mask, dtype=bool)
    unfilled = [int(s) for s in spec.state_slots if not mask[int(s)]]
    if unfilled:
        problems.append(
            f"checkpoint reads state slots {unfilled} that embodiment {embodiment_name!r} does "
            f"not fill (it fills {np.flatnonzero(mask).tolist()})"
        )
    if len(camera_topics) != len(spec.camera_names):
        problems.append(
            f"parameter camera_topics has {len(camera_topics)} topic(s) {list(camera_topics)} "
            f"but the checkpoint's cameras are {list(spec.camera_names)}; give one topic per "
            "camera, in that order"
        )
    if embodiment_cameras is not None:
        absent = [c for c in spec.camera_names if c not in embodiment_cameras]
        if absent:
            problems.append(
                f"checkpoint cameras {absent} are not cameras of embodiment {embodiment_name!r} "
                f"(it publishes {sorted(embodiment_cameras) or 'none'}); add them to the "
                "embodiment YAML's cameras, or map every checkpoint camera to a topic with "
                "parameter camera_topics"
            )
    if spec.env_state_dim > 0 and not env_state_topic:
        problems.append(
            f"checkpoint reads a {spec.env_state_dim}-dim privileged env state (object poses); "
            "set parameter env_state_topic (e.g. /sim/episode_status)"
        )
    return problems


def default_camera_topics(camera_names, known: dict[str, str]) -> list[str]:
    """Camera name -> topic from ``known`` (the embodiment's ``camera_topics``), else the ROS
    convention ``/cameras/<name>/image_raw``."""
    return [known.get(name, f"/cameras/{name}/image_raw") for name in camera_names]

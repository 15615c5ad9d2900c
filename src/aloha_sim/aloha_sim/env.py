"""A simulated ALOHA: two ViperX 300 arms in MuJoCo, joint-position controlled at 50 Hz.

Pure Python (numpy + mujoco, no rclpy). The model files are the bimanual joint-space models
shipped in the ``gym-aloha`` package; only the files are used (the package itself is not
imported, it needs gymnasium).

Commands use the real ALOHA follower message: per arm 7 values, the 6 arm joints (rad) and the
``left_finger`` position (m); the two fingers are driven symmetrically. A command with a
non-finite value or a joint outside its range is rejected and counted, and the arm keeps its
last accepted target (it holds position).
"""

from __future__ import annotations

import importlib.util
import os
import pathlib
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

os.environ.setdefault("MUJOCO_GL", "egl")  # headless rendering; must precede the mujoco import
import mujoco

ARMS = ("left", "right")
ARM_JOINT_NAMES = ("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate")
JOINT_NAMES = (*ARM_JOINT_NAMES, "left_finger", "right_finger")
COMMAND_SIZE = len(ARM_JOINT_NAMES) + 1  # 6 joints + left_finger

CONTROL_FREQUENCY = 50.0  # Hz, as the real ALOHA and the ACT sim tasks
# The real ALOHA left_finger range (m). Commands inside it are accepted and clipped to the
# model's narrower finger range, so the real and the simulated robot take the same messages.
FINGER_COMMAND_RANGE = (0.01844, 0.05800)
# Slack on joint limits before a command counts as out of range (rad): rounding in a controller
# must not turn a valid command into a rejected one.
JOINT_RANGE_TOLERANCE = 1e-3

# ROS camera name -> camera in the MuJoCo model.
CAMERAS = {
    "cam_high": "top",
    "cam_left_wrist": "left_wrist",
    "cam_right_wrist": "right_wrist",
    "cam_angle": "angle",
    "cam_front_close": "front_close",
    "cam_left_pillar": "left_pillar",
    "cam_right_pillar": "right_pillar",
}
DEFAULT_CAMERAS = ("cam_high", "cam_left_wrist", "cam_right_wrist")


@dataclass(frozen=True)
class TaskSpec:
    """One task: its model file, its free objects and how their start poses are drawn."""

    xml: str
    objects: tuple[str, ...]  # body names, each with one free joint
    # Per object: ((x_lo, x_hi), (y_lo, y_hi), z) of the uniform start position (world frame).
    start_ranges: tuple[tuple[tuple[float, float], tuple[float, float], float], ...]
    max_reward: int


# Start ranges as in the ACT sim tasks (Zhao et al. 2023).
TASKS = {
    "transfer_cube": TaskSpec(
        xml="bimanual_viperx_transfer_cube.xml",
        objects=("box",),
        start_ranges=(((0.0, 0.2), (0.4, 0.6), 0.05),),
        max_reward=4,
    ),
    "insertion": TaskSpec(
        xml="bimanual_viperx_insertion.xml",
        objects=("peg", "socket"),
        start_ranges=(((0.1, 0.2), (0.4, 0.6), 0.05), ((-0.2, -0.1), (0.4, 0.6), 0.05)),
        max_reward=4,
    ),
}


def assets_dir() -> pathlib.Path:
    """The gym-aloha model directory (found without importing gym_aloha)."""
    spec = importlib.util.find_spec("gym_aloha")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the gym-aloha package is not installed; its MuJoCo model files are needed: "
            "pip install --no-deps gym-aloha==0.1.5"
        )
    return pathlib.Path(next(iter(spec.submodule_search_locations))) / "assets"


def load_model(task: str) -> mujoco.MjModel:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; known tasks: {sorted(TASKS)}")
    path = assets_dir() / TASKS[task].xml
    if not path.is_file():
        raise FileNotFoundError(f"model file {path} for task {task!r} is missing")
    return mujoco.MjModel.from_xml_path(str(path))


class ArmIndex:
    """Addresses of one arm's joints and actuators in a model."""

    def __init__(self, model: mujoco.MjModel, arm: str):
        prefix = f"vx300s_{arm}/"
        joints = [model.joint(prefix + name) for name in JOINT_NAMES]
        self.qpos = np.array([int(j.qposadr[0]) for j in joints])
        self.qvel = np.array([int(j.dofadr[0]) for j in joints])
        self.range = np.array([j.range for j in joints])  # (8, 2)
        act_by_joint = {int(model.actuator_trnid[a, 0]): a for a in range(model.nu)}
        self.ctrl = np.array([act_by_joint[int(j.id)] for j in joints])
        self.ctrl_range = model.actuator_ctrlrange[self.ctrl].copy()
        self.gripper_body = model.body(prefix + "gripper_link").id
        self.finger_geoms = np.array(
            [
                model.geom(prefix + "10_left_gripper_finger").id,
                model.geom(prefix + "10_right_gripper_finger").id,
            ]
        )


def command_to_ctrl(command: np.ndarray) -> np.ndarray:
    """7 command values -> 8 actuator targets (right_finger mirrors left_finger)."""
    return np.concatenate([command[:6], command[6:7], -command[6:7]])


class AlohaSimEnv:
    """Bimanual ViperX 300 sim of one task.

    ``step`` advances one 50 Hz control step (several physics steps). Rendering is lazy: a
    renderer is made on the first ``render`` call, only when ``render_size`` is given.
    """

    def __init__(
        self,
        task: str = "transfer_cube",
        render_size: tuple[int, int] | None = (240, 320),
        cameras: Sequence[str] = DEFAULT_CAMERAS,
    ):
        self.model = load_model(task)  # raises on an unknown task, listing the known ones
        self.task = task
        self.spec = TASKS[task]
        self.data = mujoco.MjData(self.model)
        unknown = [c for c in cameras if c not in CAMERAS]
        if unknown:
            raise ValueError(f"unknown camera(s) {unknown}; the model has {sorted(CAMERAS)}")
        self.cameras = tuple(cameras)
        if render_size is not None:
            if len(render_size) != 2 or min(render_size) <= 0:
                raise ValueError(f"render_size must be (height, width) > 0, got {render_size}")
            render_size = (int(render_size[0]), int(render_size[1]))
        self.render_size = render_size
        self._renderer: mujoco.Renderer | None = None
        self._renderer_thread: int | None = None
        self.substeps = max(1, round(1.0 / CONTROL_FREQUENCY / self.model.opt.timestep))
        self.arms = {arm: ArmIndex(self.model, arm) for arm in ARMS}
        self._object_qpos = [
            int(self.model.joint(self.model.body(name).jntadr[0]).qposadr[0])
            for name in self.spec.objects
        ]
        self._geom_ids = self._task_geoms()
        self.rejected_commands = dict.fromkeys(ARMS, 0)
        self.last_rejection = ""
        self.seed = 0
        self.step_count = 0
        self.reward = 0  # highest stage reached in this episode
        self.success = False
        self.reset(0)

    # ------------------------------------------------------------------ episode
    @property
    def max_reward(self) -> int:
        return self.spec.max_reward

    @property
    def time(self) -> float:
        """Simulated time since the reset (s)."""
        return float(self.data.time)

    def reset(self, seed: int) -> None:
        """Start an episode: arms at the home keyframe, objects drawn from ``seed``."""
        self.seed = int(seed)
        rng = np.random.default_rng(self.seed)
        mujoco.mj_resetDataKeyframe(self.model, self.data, 0)
        for adr, ((xlo, xhi), (ylo, yhi), z) in zip(self._object_qpos, self.spec.start_ranges):
            xy = rng.uniform([xlo, ylo], [xhi, yhi])
            self.data.qpos[adr : adr + 7] = [xy[0], xy[1], z, 1.0, 0.0, 0.0, 0.0]
        for arm in self.arms.values():
            self.data.ctrl[arm.ctrl] = self.data.qpos[arm.qpos]
        mujoco.mj_forward(self.model, self.data)
        self.step_count = 0
        self.reward = 0
        self.success = False

    def home_command(self, arm: str) -> np.ndarray:
        """The 7-value command of the home keyframe pose."""
        q = self.model.key_qpos[0][self.arms[arm].qpos]
        return q[:COMMAND_SIZE].copy()

    # ------------------------------------------------------------------ commands
    def validate_command(self, arm: str, command) -> str | None:
        """Why ``command`` is rejected for ``arm``, or None when it is valid."""
        if arm not in self.arms:
            return f"unknown arm {arm!r}; arms are {ARMS}"
        values = np.asarray(command, dtype=np.float64).reshape(-1)
        if values.size != COMMAND_SIZE:
            return (
                f"{arm} command has {values.size} values; expected {COMMAND_SIZE} "
                f"({', '.join(ARM_JOINT_NAMES)}, left_finger)"
            )
        if not np.all(np.isfinite(values)):
            return f"{arm} command has non-finite values: {values.tolist()}"
        ranges = self.arms[arm].range[:6]
        low = values[:6] < ranges[:, 0] - JOINT_RANGE_TOLERANCE
        high = values[:6] > ranges[:, 1] + JOINT_RANGE_TOLERANCE
        for i in np.flatnonzero(low | high):
            return (
                f"{arm} {ARM_JOINT_NAMES[i]} command {values[i]:.4f} rad is outside "
                f"[{ranges[i, 0]:.4f}, {ranges[i, 1]:.4f}]"
            )
        finger_lo = min(FINGER_COMMAND_RANGE[0], self.arms[arm].range[6, 0])
        finger_hi = max(FINGER_COMMAND_RANGE[1], self.arms[arm].range[6, 1])
        if not finger_lo <= values[6] <= finger_hi:
            return (
                f"{arm} left_finger command {values[6]:.5f} m is outside "
                f"[{finger_lo:.5f}, {finger_hi:.5f}]"
            )
        return None

    def set_command(self, arm: str, command) -> bool:
        """Make ``command`` the arm's target; False (and counted) when it is rejected."""
        reason = self.validate_command(arm, command)
        if reason is not None:
            if arm in self.rejected_commands:
                self.rejected_commands[arm] += 1
            self.last_rejection = reason
            return False
        idx = self.arms[arm]
        ctrl = command_to_ctrl(np.asarray(command, dtype=np.float64).reshape(-1))
        self.data.ctrl[idx.ctrl] = np.clip(ctrl, idx.ctrl_range[:, 0], idx.ctrl_range[:, 1])
        return True

    def step(self, command=None) -> dict[str, bool]:
        """One control step. ``command``: None (hold), {arm: 7 values} or a (2, 7) array
        (left, right). Returns {arm: accepted} for the arms that got a command."""
        accepted = {}
        if command is not None:
            if not isinstance(command, Mapping):
                values = np.asarray(command, dtype=np.float64)
                if values.size != len(ARMS) * COMMAND_SIZE:
                    raise ValueError(
                        f"command array must hold {len(ARMS)}x{COMMAND_SIZE} values "
                        f"(left, right), got shape {values.shape}"
                    )
                command = dict(zip(ARMS, values.reshape(len(ARMS), COMMAND_SIZE)))
            for arm, values in command.items():
                if values is not None:
                    accepted[arm] = self.set_command(arm, values)
        mujoco.mj_step(self.model, self.data, nstep=self.substeps)
        self.step_count += 1
        self.reward = max(self.reward, self.task_reward())
        self.success = self.success or self.reward >= self.max_reward
        return accepted

    # ------------------------------------------------------------------ state
    def joint_positions(self, arm: str) -> np.ndarray:
        """(8,) positions in ``JOINT_NAMES`` order (rad, fingers in m)."""
        return self.data.qpos[self.arms[arm].qpos].copy()

    def joint_velocities(self, arm: str) -> np.ndarray:
        return self.data.qvel[self.arms[arm].qvel].copy()

    def command_target(self, arm: str) -> np.ndarray:
        """The arm's current 7-value target (the last accepted command)."""
        return self.data.ctrl[self.arms[arm].ctrl[:COMMAND_SIZE]].copy()

    def object_poses(self) -> np.ndarray:
        """(7 * n_objects,) x, y, z, qw, qx, qy, qz of each task object (world frame)."""
        return np.concatenate([self.data.qpos[a : a + 7] for a in self._object_qpos]).copy()

    @property
    def object_names(self) -> tuple[str, ...]:
        return self.spec.objects

    # ------------------------------------------------------------------ reward
    def _task_geoms(self) -> dict[str, np.ndarray]:
        m = self.model
        ids = {
            "left_gripper": self.arms["left"].finger_geoms,
            "right_gripper": self.arms["right"].finger_geoms,
            "table": np.array([m.geom("table").id]),
        }
        if self.task == "transfer_cube":
            ids["box"] = np.array([m.geom("red_box").id])
        else:
            ids["peg"] = np.array([m.geom("red_peg").id])
            ids["socket"] = np.array([m.geom(f"socket-{i}").id for i in range(1, 5)])
            ids["pin"] = np.array([m.geom("pin").id])
        return ids

    def _contact_pairs(self) -> np.ndarray:
        n = self.data.ncon
        return np.asarray(self.data.contact.geom[:n]).reshape(n, 2)

    def _touching(self, pairs: np.ndarray, a: str, b: str) -> bool:
        ga, gb = self._geom_ids[a], self._geom_ids[b]
        in_a0, in_b1 = np.isin(pairs[:, 0], ga), np.isin(pairs[:, 1], gb)
        in_a1, in_b0 = np.isin(pairs[:, 1], ga), np.isin(pairs[:, 0], gb)
        return bool(np.any((in_a0 & in_b1) | (in_a1 & in_b0)))

    def task_reward(self) -> int:
        """Stage reached at this instant (0..max_reward)."""
        pairs = self._contact_pairs()
        touch = lambda a, b: self._touching(pairs, a, b)  # noqa: E731
        if self.task == "transfer_cube":
            # 1 right gripper touches the cube, 2 right lifts it, 3 left touches it,
            # 4 left holds it off the table (handover done)
            left, right, table = (
                touch("box", "left_gripper"),
                touch("box", "right_gripper"),
                touch("box", "table"),
            )
            if left and not table and not right:
                return 4
            if left and not table:
                return 3
            if right and not table:
                return 2
            return 1 if right else 0
        # insertion: 1 both grippers touch their object, 2 both lifted, 3 peg touches the
        # socket in the air, 4 peg touches the pin inside the socket
        peg_held = touch("peg", "right_gripper")
        socket_held = touch("socket", "left_gripper")
        peg_table, socket_table = touch("peg", "table"), touch("socket", "table")
        if touch("peg", "pin") and not peg_table and not socket_table:
            return 4
        if touch("peg", "socket") and not peg_table and not socket_table:
            return 3
        if peg_held and socket_held and not peg_table and not socket_table:
            return 2
        return 1 if peg_held and socket_held else 0

    # ------------------------------------------------------------------ rendering
    def render(self, camera: str = "cam_high") -> np.ndarray:
        """(H, W, 3) uint8 RGB from ``camera`` (a key of ``CAMERAS``)."""
        if self.render_size is None:
            raise RuntimeError("this AlohaSimEnv was made with render_size=None; it cannot render")
        if camera not in CAMERAS:
            raise ValueError(f"unknown camera {camera!r}; the model has {sorted(CAMERAS)}")
        if self._renderer is not None and self._renderer_thread != threading.get_ident():
            # An EGL context is current in one thread only (EGL_BAD_ACCESS elsewhere): a node
            # that rendered in __init__ and then renders from its spin thread needs a new one.
            self._renderer.close()
            self._renderer = None
        if self._renderer is None:
            self._renderer_thread = threading.get_ident()
            # Shadows and multisampling cost ~10x the CPU time of a plain render.
            self.model.vis.quality.offsamples = 0
            height, width = self.render_size
            self.model.vis.global_.offheight = max(self.model.vis.global_.offheight, height)
            self.model.vis.global_.offwidth = max(self.model.vis.global_.offwidth, width)
            self._renderer = mujoco.Renderer(self.model, height, width)
        self._renderer.update_scene(self.data, camera=CAMERAS[camera])
        self._renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = False
        return self._renderer.render().copy()

    def render_all(self) -> dict[str, np.ndarray]:
        return {name: self.render(name) for name in self.cameras}

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    def __enter__(self) -> AlohaSimEnv:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

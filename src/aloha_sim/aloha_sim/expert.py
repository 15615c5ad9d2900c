"""Scripted bimanual expert for the ALOHA sim tasks (privileged: it reads the object poses).

Each arm follows a list of segments. A segment names the control step at which it ends, a
gripper-tip pose target and a finger opening; the target is computed when the segment starts,
from the object poses and the arm's pose at that moment, so the plan corrects for where the
objects really are (after a grasp, after a lift). Between segments the tip pose is interpolated
(linear position, slerp rotation) and turned into joint positions by damped-least-squares
inverse kinematics on a private copy of the MuJoCo model. The output is exactly what the
follower arms take: per arm 6 joint positions (rad) and the left_finger position (m).

Gripper frame (MuJoCo ``gripper_link``): x points out of the gripper, the fingers slide along y.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import mujoco
import numpy as np

from aloha_sim.env import ARMS, COMMAND_SIZE, ArmIndex, load_model

TIP_OFFSET = 0.145  # m along gripper x from gripper_link to the fingertip pads' centre
FINGER_OPEN = 0.057  # m, the model's widest finger position
FINGER_CLOSED = 0.021  # m, fully closed; on an object the position error gives the grip force

# Tip orientations (columns: gripper x, y, z in the world frame).
DOWN_RIGHT = np.array([[0, 0, -1], [0, -1, 0], [-1, 0, 0]], dtype=float).T
DOWN_LEFT = np.array([[0, 0, -1], [0, 1, 0], [1, 0, 0]], dtype=float).T
HORIZONTAL_RIGHT = np.array([[-1, 0, 0], [0, -1, 0], [0, 0, 1]], dtype=float).T
# Left gripper pointing +x with the fingers closing vertically (crossed with the right's).
HORIZONTAL_LEFT_VERTICAL_FINGERS = np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0]], dtype=float).T


# ---------------------------------------------------------------------- small pose helpers
def quat_to_mat(quat: np.ndarray) -> np.ndarray:
    mat = np.zeros(9)
    mujoco.mju_quat2Mat(mat, np.asarray(quat, dtype=float))
    return mat.reshape(3, 3)


def mat_to_quat(mat: np.ndarray) -> np.ndarray:
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, np.asarray(mat, dtype=float).reshape(9))
    return quat


def slerp(q0: np.ndarray, q1: np.ndarray, t: float) -> np.ndarray:
    dot = float(np.dot(q0, q1))
    if dot < 0.0:  # take the short way round
        q1, dot = -q1, -dot
    if dot > 0.9995:
        q = q0 + t * (q1 - q0)
        return q / np.linalg.norm(q)
    theta = np.arccos(dot)
    return (np.sin((1 - t) * theta) * q0 + np.sin(t * theta) * q1) / np.sin(theta)


def smoothstep(t: float) -> float:
    """Zero-velocity start and end, so arms do not jerk at segment boundaries."""
    t = min(max(t, 0.0), 1.0)
    return t * t * (3.0 - 2.0 * t)


@dataclass(frozen=True)
class Pose:
    pos: np.ndarray  # (3,)
    rot: np.ndarray  # (3, 3)

    def compose(self, other: Pose) -> Pose:
        return Pose(self.pos + self.rot @ other.pos, self.rot @ other.rot)

    def inverse(self) -> Pose:
        return Pose(-self.rot.T @ self.pos, self.rot.T)


def object_pose(poses: np.ndarray, index: int) -> Pose:
    p = poses[7 * index : 7 * index + 7]
    return Pose(np.array(p[:3], dtype=float), quat_to_mat(p[3:]))


def yaw_only(rot: np.ndarray) -> np.ndarray:
    """The rotation about world z closest to ``rot`` (objects resting on the table)."""
    yaw = np.arctan2(rot[1, 0], rot[0, 0])
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])


# ---------------------------------------------------------------------- kinematics
# Null-space regularization of the IK: forearm_roll (joint 3) pulled weakly towards 0.
ROLL_SELECT = np.eye(6)[[3]]
ROLL_REST_WEIGHT = 0.05

# Half-turn about the gripper's x (approach) axis: the two fingers swap places, which grasps
# the same way.
GRIPPER_HALF_TURN = np.diag([1.0, -1.0, -1.0])


def nearest_symmetric(target: Pose, current_rot: np.ndarray) -> Pose:
    """``target`` or its gripper-symmetric twin, whichever is the smaller rotation away.

    Without this the IK reaches a target turned by pi about the approach axis by swinging
    forearm_roll and wrist_rotate through pi: a violent motion, and demonstrations whose joint
    trajectories jump between two equivalent branches, which a policy cannot learn well.
    """
    twin = target.rot @ GRIPPER_HALF_TURN
    # trace(R_a^T R_b) grows as the rotation between a and b shrinks.
    if np.trace(current_rot.T @ twin) > np.trace(current_rot.T @ target.rot):
        return Pose(target.pos, twin)
    return target


class ArmKinematics:
    """Forward and inverse kinematics of both arms' tips on a private MjData."""

    def __init__(self, task: str):
        self.model = load_model(task)
        self.data = mujoco.MjData(self.model)
        self.arms = {arm: ArmIndex(self.model, arm) for arm in ARMS}
        self._jacp = np.zeros((3, self.model.nv))
        self._jacr = np.zeros((3, self.model.nv))

    def _set(self, arm: str, joints: np.ndarray) -> None:
        self.data.qpos[self.arms[arm].qpos[:6]] = joints[:6]
        mujoco.mj_kinematics(self.model, self.data)
        mujoco.mj_comPos(self.model, self.data)  # mj_jac reads the com-based quantities

    def _tip(self, arm: str) -> Pose:
        body = self.arms[arm].gripper_body
        rot = self.data.xmat[body].reshape(3, 3).copy()
        return Pose(self.data.xpos[body] + rot[:, 0] * TIP_OFFSET, rot)

    def tip_pose(self, arm: str, joints: np.ndarray) -> Pose:
        self._set(arm, joints)
        return self._tip(arm)

    def solve(
        self,
        arm: str,
        target: Pose,
        joints: np.ndarray,
        iterations: int = 8,
        damping: float = 0.02,
        rot_weight: float = 0.5,
    ) -> np.ndarray:
        """Joint positions (6,) whose tip reaches ``target``, starting from ``joints``."""
        idx = self.arms[arm]
        q = np.array(joints[:6], dtype=float)
        lo, hi = idx.range[:6, 0], idx.range[:6, 1]
        for _ in range(iterations):
            self._set(arm, q)
            tip = self._tip(arm)
            err_pos = target.pos - tip.pos
            err_rot = 0.5 * sum(np.cross(tip.rot[:, i], target.rot[:, i]) for i in range(3))
            err = np.concatenate([err_pos, rot_weight * err_rot])
            if np.linalg.norm(err) < 1e-5:
                break
            mujoco.mj_jac(self.model, self.data, self._jacp, self._jacr, tip.pos, idx.gripper_body)
            jac = np.vstack([self._jacp[:, idx.qvel[:6]], rot_weight * self._jacr[:, idx.qvel[:6]]])
            # Near wrist_angle = 0 the forearm_roll and wrist_rotate axes line up, and plain
            # DLS lets them counter-rotate towards +-pi. A weak pull of forearm_roll to 0
            # (extra least-squares rows) pins that null space; the tip error barely changes.
            a = np.vstack([jac, ROLL_REST_WEIGHT * ROLL_SELECT])
            b = np.concatenate([err, ROLL_REST_WEIGHT * (0.0 - q[ROLL_SELECT.argmax(1)])])
            step = np.linalg.solve(a.T @ a + damping**2 * np.eye(6), a.T @ b)
            q = np.clip(q + step, lo, hi)
        return q


# ---------------------------------------------------------------------- plans
@dataclass
class Context:
    """What a segment's target function may look at when its segment starts."""

    objects: np.ndarray  # object poses (7 per object)
    tips: dict[str, Pose]  # measured tip pose of each arm
    planned: dict[str, Pose]  # where each arm's plan currently is
    rng: np.random.Generator
    jitter: dict[str, np.ndarray]  # per-episode offsets drawn at reset


TargetFn = Callable[[Context], Pose]


@dataclass
class Segment:
    end_step: int
    target: TargetFn | None  # None: keep the previous target
    finger: float


def _keep(arm: str) -> TargetFn:
    return lambda ctx: ctx.planned[arm]


def transfer_cube_plan(jitter: Mapping[str, np.ndarray], speed: float) -> dict[str, list[Segment]]:
    """Right picks the cube top-down and carries it to the middle without turning it (the cube
    could pivot between the fingertips); the left comes in sideways, fingers closing on the
    cube's top and bottom faces between the right's fingers, then the right lets go."""
    meet = np.array([0.05, 0.5, 0.22]) + jitter["meet"]

    def t(step: float) -> int:
        return round(step * speed)

    def above_cube(ctx: Context) -> Pose:
        cube = object_pose(ctx.objects, 0)
        return Pose(cube.pos + np.array([0, 0, 0.09]), DOWN_RIGHT)

    def grasp_cube(ctx: Context) -> Pose:
        cube = object_pose(ctx.objects, 0)
        return Pose(cube.pos + np.array([0, 0, -0.004]), DOWN_RIGHT)

    def right_meet(ctx: Context) -> Pose:
        return Pose(meet, DOWN_RIGHT)

    def left_pre_meet(ctx: Context) -> Pose:
        return Pose(meet + np.array([-0.12, 0, 0.004]), HORIZONTAL_LEFT_VERTICAL_FINGERS)

    def left_meet(ctx: Context) -> Pose:
        cube = object_pose(ctx.objects, 0)
        return Pose(cube.pos + np.array([0.002, 0, 0]), HORIZONTAL_LEFT_VERTICAL_FINGERS)

    def right_retreat(ctx: Context) -> Pose:
        p = ctx.planned["right"]
        return Pose(p.pos + np.array([0.03, 0, 0.08]), p.rot)

    def left_retreat(ctx: Context) -> Pose:
        p = ctx.planned["left"]
        return Pose(p.pos + np.array([-0.06, 0, 0.0]), p.rot)

    right = [
        Segment(t(90), above_cube, FINGER_OPEN),
        Segment(t(130), grasp_cube, FINGER_OPEN),
        Segment(t(150), _keep("right"), FINGER_CLOSED),
        Segment(t(220), right_meet, FINGER_CLOSED),
        Segment(t(285), _keep("right"), FINGER_CLOSED),
        Segment(t(300), _keep("right"), FINGER_OPEN),
        Segment(t(340), right_retreat, FINGER_OPEN),
    ]
    left = [
        Segment(t(150), _keep("left"), FINGER_OPEN),
        Segment(t(225), left_pre_meet, FINGER_OPEN),
        Segment(t(260), left_meet, FINGER_OPEN),
        Segment(t(280), _keep("left"), FINGER_CLOSED),
        Segment(t(300), _keep("left"), FINGER_CLOSED),
        Segment(t(350), left_retreat, FINGER_CLOSED),
    ]
    return {"left": left, "right": right}


def insertion_plan(jitter: Mapping[str, np.ndarray], speed: float) -> dict[str, list[Segment]]:
    """Left picks the socket, right the peg, both top-down; they meet and the right inserts."""
    meet = np.array([0.0, 0.5, 0.22]) + jitter["meet"]

    def t(step: float) -> int:
        return round(step * speed)

    def grasp_point(index: int, along: float, depth: float) -> Callable[[Context], np.ndarray]:
        def point(ctx: Context) -> np.ndarray:
            obj = object_pose(ctx.objects, index)
            return obj.pos + yaw_only(obj.rot) @ [along, 0, 0] + np.array([0, 0, depth])

        return point

    def rot_for(index: int, base: np.ndarray) -> Callable[[Context], np.ndarray]:
        # Fingers across the object's long axis, whatever its yaw.
        return lambda ctx: yaw_only(object_pose(ctx.objects, index).rot) @ base

    peg_point, socket_point = grasp_point(0, 0.03, 0.0), grasp_point(1, -0.03, -0.012)
    peg_rot, socket_rot = rot_for(0, DOWN_RIGHT), rot_for(1, DOWN_LEFT)

    def above(point, rot) -> TargetFn:
        return lambda ctx: Pose(point(ctx) + np.array([0, 0, 0.09]), rot(ctx))

    def at(point, rot) -> TargetFn:
        return lambda ctx: Pose(point(ctx), rot(ctx))

    def lift(arm: str, height: float) -> TargetFn:
        def target(ctx: Context) -> Pose:
            return Pose(ctx.planned[arm].pos + np.array([0, 0, height]), ctx.planned[arm].rot)

        return target

    def socket_meet(ctx: Context) -> Pose:
        return Pose(meet + np.array([-0.10, 0, 0]), DOWN_LEFT)

    def peg_meet(ctx: Context) -> Pose:
        return Pose(meet + np.array([0.12, 0, 0]), DOWN_RIGHT)

    def peg_to(gap: float) -> TargetFn:
        """Right tip pose that puts the peg on the socket's axis, its end ``gap`` m from the pin."""

        def target(ctx: Context) -> Pose:
            peg, socket = object_pose(ctx.objects, 0), object_pose(ctx.objects, 1)
            # Peg axis along the socket axis; peg centre = socket centre + (0.04 + 0.06 + gap) x.
            wanted = Pose(socket.pos + socket.rot @ [0.10 + gap, 0, 0], socket.rot)
            tip_in_peg = peg.inverse().compose(ctx.tips["right"])
            return wanted.compose(tip_in_peg)

        return target

    right = [
        Segment(t(80), above(peg_point, peg_rot), FINGER_OPEN),
        Segment(t(120), at(peg_point, peg_rot), FINGER_OPEN),
        Segment(t(140), _keep("right"), FINGER_CLOSED),
        Segment(t(200), peg_meet, FINGER_CLOSED),
        Segment(t(250), peg_to(0.04), FINGER_CLOSED),
        Segment(t(280), peg_to(0.04), FINGER_CLOSED),
        Segment(t(330), peg_to(0.0), FINGER_CLOSED),
        Segment(t(360), peg_to(-0.008), FINGER_CLOSED),
        Segment(t(420), peg_to(-0.008), FINGER_CLOSED),
    ]
    left = [
        Segment(t(80), above(socket_point, socket_rot), FINGER_OPEN),
        Segment(t(120), at(socket_point, socket_rot), FINGER_OPEN),
        Segment(t(140), _keep("left"), FINGER_CLOSED),
        Segment(t(160), lift("left", 0.08), FINGER_CLOSED),
        Segment(t(200), socket_meet, FINGER_CLOSED),
        Segment(t(420), _keep("left"), FINGER_CLOSED),
    ]
    return {"left": left, "right": right}


PLANS = {"transfer_cube": transfer_cube_plan, "insertion": insertion_plan}
EPISODE_LENGTHS = {"transfer_cube": 400, "insertion": 450}


class ScriptedExpert:
    """Joint-position commands for both arms, one control step at a time.

    ``reset(seed)`` draws this episode's small variations (meeting point, speed);
    ``act(step, joint_positions, object_poses)`` returns {arm: (7,) command}.
    """

    def __init__(self, task: str, vary: bool = True):
        if task not in PLANS:
            raise ValueError(f"no scripted expert for task {task!r}; known: {sorted(PLANS)}")
        self.task = task
        self.vary = vary
        self.kin = ArmKinematics(task)
        self.reset(0)

    def reset(self, seed: int) -> None:
        rng = np.random.default_rng([int(seed), 7])  # independent of the env's object draw
        if self.vary:
            jitter = {"meet": rng.uniform([-0.02, -0.02, -0.02], [0.02, 0.02, 0.02])}
            speed = float(rng.uniform(0.95, 1.05))
        else:
            jitter, speed = {"meet": np.zeros(3)}, 1.0
        self.rng = rng
        self.jitter = jitter
        self.plan = PLANS[self.task](jitter, speed)
        self._segment = dict.fromkeys(ARMS, -1)
        self._start: dict[str, tuple[int, Pose, float]] = {}
        self._end: dict[str, tuple[Pose, float]] = {}
        self._planned: dict[str, Pose] = {}
        self._q: dict[str, np.ndarray] = {}
        self._step = -1

    def act(
        self, step: int, joint_positions: Mapping[str, np.ndarray], object_poses: np.ndarray
    ) -> dict[str, np.ndarray]:
        if step < self._step or self._step < 0:
            self._initialize(joint_positions)
        self._step = step
        tips = {arm: self.kin.tip_pose(arm, joint_positions[arm]) for arm in ARMS}
        commands = {}
        for arm in ARMS:
            self._advance(
                arm, step, Context(object_poses, tips, self._planned, self.rng, self.jitter)
            )
            (start_step, start_pose, start_finger) = self._start[arm]
            end_pose, end_finger = self._end[arm]
            end_step = self._end_step(arm)
            span = max(end_step - start_step, 1)
            s = smoothstep((step - start_step) / span)
            pose = Pose(
                start_pose.pos + s * (end_pose.pos - start_pose.pos),
                quat_to_mat(slerp(mat_to_quat(start_pose.rot), mat_to_quat(end_pose.rot), s)),
            )
            self._planned[arm] = pose
            self._q[arm] = self.kin.solve(arm, pose, self._q[arm])
            finger = start_finger + s * (end_finger - start_finger)
            commands[arm] = np.concatenate([self._q[arm], [finger]])
            assert commands[arm].shape == (COMMAND_SIZE,)
        return commands

    def _initialize(self, joint_positions: Mapping[str, np.ndarray]) -> None:
        self._segment = dict.fromkeys(ARMS, -1)
        for arm in ARMS:
            q = np.asarray(joint_positions[arm], dtype=float)
            self._q[arm] = q[:6].copy()
            pose = self.kin.tip_pose(arm, q)
            self._planned[arm] = pose
            self._start[arm] = (0, pose, float(q[6]))
            self._end[arm] = (pose, float(q[6]))

    def _end_step(self, arm: str) -> int:
        segments = self.plan[arm]
        i = self._segment[arm]
        return segments[i].end_step if 0 <= i < len(segments) else self._start[arm][0]

    def _advance(self, arm: str, step: int, ctx: Context) -> None:
        segments = self.plan[arm]
        while self._segment[arm] < len(segments) - 1 and (
            self._segment[arm] < 0 or step >= segments[self._segment[arm]].end_step
        ):
            end_pose, end_finger = self._end[arm]
            self._segment[arm] += 1
            segment = segments[self._segment[arm]]
            start_step = segments[self._segment[arm] - 1].end_step if self._segment[arm] else 0
            self._start[arm] = (start_step, end_pose, end_finger)
            ctx.planned[arm] = end_pose
            target = segment.target(ctx) if segment.target is not None else end_pose
            self._end[arm] = (nearest_symmetric(target, end_pose.rot), segment.finger)


def run_episode(env, expert: ScriptedExpert, seed: int, steps: int | None = None) -> bool:
    """Reset ``env`` and ``expert`` to ``seed``, run the expert; True on task success."""
    env.reset(seed)
    expert.reset(seed)
    for step in range(steps or EPISODE_LENGTHS[env.task]):
        joints = {arm: env.joint_positions(arm) for arm in ARMS}
        env.step(expert.act(step, joints, env.object_poses()))
    return env.success

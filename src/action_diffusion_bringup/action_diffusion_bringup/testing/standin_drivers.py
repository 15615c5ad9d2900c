"""TEST STAND-INS for the four stock drivers the real bringups drive (no vendor code here).

Each reproduces what our side depends on, from the drivers' documented interfaces: topics,
types, joint names, units, enable logic and the rejections (wrong size, unknown joint, a
trajectory in the past, commands before enable), with the driver's own error text where it is
known. The arms are ideal position servos with the joints' velocity limits; nothing else of the
hardware is modelled.

- ``interbotix``: xs_sdk (ALOHA 2 followers): <ns>/joint_states at 100 Hz (6 arm joints, gripper
  in rad, left/right_finger in m), <ns>/commands/joint_group (JointGroupCommand, group "arm"),
  <ns>/commands/joint_single (JointSingleCommand).
- ``piper``: piper_ctrl_single_node: <ns>/joint_states_single (joint1..6 + gripper in m, six
  velocities), <ns>/joint_ctrl_single (JointState; velocity[6] = speed %, effort[6] = gripper
  force N), <ns>/enable_flag (Bool); commands before enabling are dropped silently.
- ``ros2_control``: a controller manager with <ns>/controller_manager/list_controllers, joint
  trajectory controllers (<ns>/<name>/joint_trajectory, interpolated at ``control_rate``), a
  forward position controller (<ns>/<name>/commands) and GripperCommand action servers.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.action import ActionServer, GoalResponse
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, Float64MultiArray
from std_srvs.srv import SetBool
from trajectory_msgs.msg import JointTrajectory

from action_diffusion_msgs.msg import ActionChunk
from action_diffusion_policy.runtime import conversions as cv

ALOHA2_GRIPPER_RAD = (0.6197, 1.6214)  # follower gripper joint, closed / open
ALOHA2_FINGER_M = (0.0440, 0.0579)  # left_finger at those positions
VX300S_ARM = ("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate")


def _seconds(duration) -> float:
    return duration.sec + duration.nanosec * 1e-9


@dataclass
class ServoArm:
    """Joint positions that follow their targets at the velocity limit."""

    names: tuple[str, ...]
    position: np.ndarray
    velocity_limit: np.ndarray
    target: np.ndarray = None
    speed_fraction: float = 1.0

    def __post_init__(self):
        self.position = np.asarray(self.position, dtype=np.float64).copy()
        self.target = self.position.copy()
        self.velocity_limit = np.broadcast_to(self.velocity_limit, self.position.shape).copy()

    def step(self, dt: float) -> None:
        limit = self.velocity_limit * self.speed_fraction * dt
        self.position += np.clip(self.target - self.position, -limit, limit)

    def get(self, name: str) -> float:
        return float(self.position[self.names.index(name)])


@dataclass
class Record:
    """What a stand-in accepted and refused (for the tests' assertions)."""

    accepted: dict = field(default_factory=dict)  # input -> count
    rejected: list = field(default_factory=list)  # (input, reason)
    last: dict = field(default_factory=dict)  # input -> last accepted message

    def accept(self, key: str, msg) -> None:
        self.accepted[key] = self.accepted.get(key, 0) + 1
        self.last[key] = msg

    def reject(self, node: Node, key: str, reason: str) -> None:
        self.rejected.append((key, reason))
        node.get_logger().error(reason)


class StandInDriver(Node):
    """Base: the servo arms, a physics step and the joint-state publishers."""

    def __init__(self, name: str, rate_hz: float = 100.0):
        super().__init__(name)
        self.record = Record()
        self.lock = threading.Lock()
        self.arms: dict[str, ServoArm] = {}
        self._state_pubs: list = []  # (publisher, arm, names, to_message)
        self._dt = 1.0 / rate_hz
        self.create_timer(self._dt, self._tick)

    def publish_state(self, topic: str, arm: str, make) -> None:
        self._state_pubs.append((self.create_publisher(JointState, topic, 10), arm, make))

    def _tick(self) -> None:
        with self.lock:
            for arm in self.arms.values():
                arm.step(self._dt)
            stamp = self.get_clock().now().to_msg()
            for pub, arm, make in self._state_pubs:
                msg = make(self.arms[arm])
                msg.header.stamp = stamp
                pub.publish(msg)


# --- Interbotix xs_sdk -------------------------------------------------------------------------
def finger_from_gripper(rad: float) -> float:
    (g0, g1), (f0, f1) = ALOHA2_GRIPPER_RAD, ALOHA2_FINGER_M
    return f0 + (rad - g0) * (f1 - f0) / (g1 - g0)


class InterbotixStandIn(StandInDriver):
    def __init__(self, namespaces=("follower_left", "follower_right"), gripper_rad=1.0):
        super().__init__("interbotix_standin")
        from interbotix_xs_msgs.msg import JointGroupCommand, JointSingleCommand

        for ns in namespaces:
            home = [0.0, -0.96, 1.16, 0.0, -0.3, 0.0, gripper_rad]
            self.arms[ns] = ServoArm((*VX300S_ARM, "gripper"), home, np.pi)
            self.publish_state(f"/{ns}/joint_states", ns, self._state)
            self.create_subscription(JointGroupCommand, f"/{ns}/commands/joint_group",
                                     lambda m, ns=ns: self._on_group(ns, m), 10)  # fmt: skip
            self.create_subscription(JointSingleCommand, f"/{ns}/commands/joint_single",
                                     lambda m, ns=ns: self._on_single(ns, m), 10)  # fmt: skip

    @staticmethod
    def _state(arm: ServoArm) -> JointState:
        finger = finger_from_gripper(arm.get("gripper"))
        return JointState(
            name=[*arm.names, "left_finger", "right_finger"],
            position=[*arm.position.tolist(), finger, -finger],
            velocity=[0.0] * 9,
            effort=[0.0] * 9,
        )

    def _on_group(self, ns: str, msg) -> None:
        key = f"{ns}/joint_group"
        if msg.name != "arm":
            self.record.reject(self, key, f"Group '{msg.name}' does not exist (stand-in text).")
            return
        if len(msg.cmd) != len(VX300S_ARM):
            self.record.reject(
                self, key,
                f"Number of commands ({len(msg.cmd)}) does not match the number of joints in "
                f"group 'arm' ({len(VX300S_ARM)}). Will not execute.",
            )  # fmt: skip
            return
        with self.lock:
            self.arms[ns].target[:6] = msg.cmd
        self.record.accept(key, msg)

    def _on_single(self, ns: str, msg) -> None:
        key = f"{ns}/joint_single"
        arm = self.arms[ns]
        if msg.name not in arm.names:
            self.record.reject(
                self, key,
                f"Invalid command for argument 'mode' while commanding joint '{msg.name}'.",
            )  # fmt: skip
            return
        with self.lock:
            arm.target[arm.names.index(msg.name)] = msg.cmd
        self.record.accept(key, msg)


# --- AgileX PiPER ------------------------------------------------------------------------------
PIPER_JOINTS = ("joint1", "joint2", "joint3", "joint4", "joint5", "joint6", "gripper")


class PiperStandIn(StandInDriver):
    DEFAULT_SPEED_PERCENT = 30
    DEFAULT_GRIPPER_FORCE = 1.0

    def __init__(self, namespaces=("piper_left", "piper_right"), auto_enable=False):
        super().__init__("piper_standin")
        self.enabled = dict.fromkeys(namespaces, auto_enable)
        self.dropped_before_enable = dict.fromkeys(namespaces, 0)
        self.speed_percent = dict.fromkeys(namespaces, self.DEFAULT_SPEED_PERCENT)
        self.gripper_force = dict.fromkeys(namespaces, self.DEFAULT_GRIPPER_FORCE)
        for ns in namespaces:
            home = [0.0, 1.0, -1.0, 0.0, 0.3, 0.0, 0.03]
            self.arms[ns] = ServoArm(PIPER_JOINTS, home, [3.0] * 6 + [0.1])
            self.arms[ns].speed_fraction = self.DEFAULT_SPEED_PERCENT / 100
            self.publish_state(f"/{ns}/joint_states_single", ns, self._state)
            self.create_subscription(JointState, f"/{ns}/joint_ctrl_single",
                                     lambda m, ns=ns: self._on_command(ns, m), 10)  # fmt: skip
            self.create_subscription(Bool, f"/{ns}/enable_flag",
                                     lambda m, ns=ns: self._on_enable(ns, m), 10)  # fmt: skip

    @staticmethod
    def _state(arm: ServoArm) -> JointState:
        # Six velocities for seven names, as the driver publishes them.
        return JointState(name=list(arm.names), position=arm.position.tolist(),
                          velocity=[0.0] * 6, effort=[0.0] * 7)  # fmt: skip

    def _on_enable(self, ns: str, msg) -> None:
        if msg.data:
            self.enabled[ns] = True

    def _on_command(self, ns: str, msg) -> None:
        key = f"{ns}/joint_ctrl_single"
        if not self.enabled[ns]:
            self.dropped_before_enable[ns] += 1  # the driver drops them without a word
            return
        index = {n: i for i, n in enumerate(msg.name)}
        arm = self.arms[ns]
        with self.lock:
            for j, name in enumerate(PIPER_JOINTS[:6]):  # arm joints by name
                if name in index:
                    arm.target[j] = msg.position[index[name]]
            if len(msg.position) > 6:  # the gripper by index 6
                arm.target[6] = np.clip(msg.position[6], 0.0, 0.08)
            if len(msg.velocity) == 7 and any(msg.velocity):
                self.speed_percent[ns] = int(np.clip(msg.velocity[6], 1, 100))
                arm.speed_fraction = self.speed_percent[ns] / 100
            if len(msg.effort) == 7:
                self.gripper_force[ns] = float(np.clip(msg.effort[6], 0.5, 3.0))
        self.record.accept(key, msg)


# --- ros2_control (UR, FR3) --------------------------------------------------------------------
@dataclass
class Controller:
    name: str
    kind: str  # "trajectory" | "forward" | "gripper"
    joints: tuple[str, ...]
    state: str = "active"


class Ros2ControlStandIn(StandInDriver):
    """One controller manager per namespace; joint trajectory controllers interpolate the
    accepted trajectory at ``control_rate`` (the real ones run in the C++ control loop)."""

    def __init__(self, name: str, robots: dict, control_rate: float = 250.0):
        """``robots``: namespace -> dict(joints, home, velocity_limit, state_topics:
        {topic: joint names}, controllers: [Controller], gripper_action: {controller name:
        (joint, (lo, hi))})."""
        super().__init__(name, rate_hz=control_rate)
        from control_msgs.action import GripperCommand
        from controller_manager_msgs.srv import ListControllers

        self.controllers: dict[str, dict[str, Controller]] = {}
        # (ns, controller) -> (t0, times, points, joint columns, positions at receipt)
        self.trajectories: dict[tuple[str, str], tuple] = {}
        self.setpoint_changes = 0  # control cycles in which a trajectory moved a target
        self.control_cycles = 0
        self._ranges = {}
        for ns, spec in robots.items():
            self.arms[ns] = ServoArm(tuple(spec["joints"]), spec["home"], spec["velocity_limit"])
            for topic, names in spec["state_topics"].items():
                self.publish_state(topic, ns, lambda arm, names=tuple(names): JointState(
                    name=list(names), position=[arm.get(n) for n in names],
                    velocity=[0.0] * len(names), effort=[0.0] * len(names)))  # fmt: skip
            self.controllers[ns] = {c.name: c for c in spec["controllers"]}
            self.create_service(ListControllers, f"/{ns}/controller_manager/list_controllers",
                                lambda req, res, ns=ns: self._list(ns, res))  # fmt: skip
            for c in spec["controllers"]:
                if c.kind == "trajectory":
                    self.create_subscription(
                        JointTrajectory, f"/{ns}/{c.name}/joint_trajectory",
                        lambda m, ns=ns, c=c: self._on_trajectory(ns, c, m), 10)  # fmt: skip
                elif c.kind == "forward":
                    self.create_subscription(
                        Float64MultiArray, f"/{ns}/{c.name}/commands",
                        lambda m, ns=ns, c=c: self._on_forward(ns, c, m), 10)  # fmt: skip
                else:
                    self._ranges[(ns, c.name)] = spec["gripper_range"][c.name]
                    ActionServer(
                        self, GripperCommand, f"/{ns}/{c.name}/{spec['gripper_action'][c.name]}",
                        execute_callback=lambda h, ns=ns, c=c: self._on_gripper(ns, c, h),
                        goal_callback=lambda g, ns=ns, c=c: (
                            GoalResponse.ACCEPT if self.controllers[ns][c.name].state == "active"
                            else GoalResponse.REJECT),
                    )  # fmt: skip

    def _list(self, ns: str, response):
        from controller_manager_msgs.msg import ControllerState

        response.controller = [
            ControllerState(
                name=c.name, state=c.state, type=f"standin/{c.kind}",
                claimed_interfaces=[f"{j}/position" for j in c.joints] if c.state == "active"
                else [],
                required_command_interfaces=[f"{j}/position" for j in c.joints],
            )
            for c in self.controllers[ns].values()
        ]  # fmt: skip
        return response

    def _on_trajectory(self, ns: str, ctrl: Controller, msg) -> None:
        key = f"{ns}/{ctrl.name}"
        if ctrl.state != "active":
            self.record.reject(self, key, "Can't accept new commands. subscriber is inactive")
            return
        if not msg.points:
            self.record.reject(self, key, "Empty joint trajectory received (stand-in text).")
            return
        for name in msg.joint_names:
            if name not in ctrl.joints:
                self.record.reject(
                    self, key, f"Incoming joint {name} doesn't match the controller's joints."
                )
                return
        if len(msg.joint_names) != len(ctrl.joints):
            self.record.reject(
                self, key, "Joints on incoming trajectory don't match the controller joints."
            )
            return
        times = np.array([_seconds(p.time_from_start) for p in msg.points])
        if np.any(np.diff(times) <= 0):
            self.record.reject(self, key, "Time between points needs to be strictly increasing "
                                          "(stand-in text).")  # fmt: skip
            return
        now = self.get_clock().now().nanoseconds * 1e-9
        start = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        if start != 0.0 and start + times[-1] < now:
            self.record.reject(
                self, key,
                f"Received trajectory with non-zero start time ({start:f}) that ends in the "
                f"past ({start + times[-1]:f})",
            )  # fmt: skip
            return
        t0 = now if start == 0.0 else start
        arm = self.arms[ns]
        columns = [arm.names.index(n) for n in msg.joint_names]
        points = np.array([p.positions for p in msg.points], dtype=np.float64)
        with self.lock:
            begin = arm.position[columns].copy()  # interpolate from where the joints are
            self.trajectories[(ns, ctrl.name)] = (t0, times, points, columns, begin)
        self.record.accept(key, msg)

    def _on_forward(self, ns: str, ctrl: Controller, msg) -> None:
        key = f"{ns}/{ctrl.name}"
        if ctrl.state != "active":
            self.record.reject(self, key, "Can't accept new commands. subscriber is inactive")
            return
        if len(msg.data) != len(ctrl.joints):
            self.record.reject(
                self, key,
                f"command size ({len(msg.data)}) does not match number of interfaces "
                f"({len(ctrl.joints)})",
            )  # fmt: skip
            return
        arm = self.arms[ns]
        with self.lock:
            arm.target[[arm.names.index(j) for j in ctrl.joints]] = msg.data
        self.record.accept(key, msg)

    def _on_gripper(self, ns: str, ctrl: Controller, handle):
        from control_msgs.action import GripperCommand

        lo, hi = self._ranges[(ns, ctrl.name)]
        arm = self.arms[ns]
        joint = ctrl.joints[0]
        with self.lock:
            arm.target[arm.names.index(joint)] = np.clip(handle.request.command.position, lo, hi)
        self.record.accept(f"{ns}/{ctrl.name}", handle.request)
        handle.succeed()  # the stand-in does not hold the goal until the fingers stop
        result = GripperCommand.Result()
        result.position = arm.get(joint)
        result.reached_goal = True
        return result

    def _tick(self) -> None:
        now = self.get_clock().now().nanoseconds * 1e-9
        with self.lock:
            self.control_cycles += 1
            moved = False
            for (ns, _), (t0, times, points, columns, begin) in self.trajectories.items():
                # Linear interpolation from the joints' state at receipt through the points.
                t = now - t0
                knots = np.concatenate([[0.0], times])
                rows = np.vstack([begin, points])
                target = np.array([np.interp(t, knots, rows[:, j]) for j in range(rows.shape[1])])
                arm = self.arms[ns]
                if not np.array_equal(arm.target[columns], target):
                    moved = True
                arm.target[columns] = target
            self.setpoint_changes += moved
        super()._tick()


def ur_robots(namespaces=("left", "right")) -> dict:
    """Two UR5e arms with Robotiq grippers, tf_prefix <ns>_, as the UR driver sets them up."""
    out = {}
    for ns in namespaces:
        base = ("shoulder_pan_joint", "shoulder_lift_joint", "elbow_joint", "wrist_1_joint",
                "wrist_2_joint", "wrist_3_joint")  # fmt: skip
        arm = [f"{ns}_{j}" for j in base]
        knuckle = f"{ns}_robotiq_85_left_knuckle_joint"
        out[ns] = {
            "joints": [*arm, knuckle],
            "home": [0.0, -1.57, 1.57, -1.57, -1.57, 0.0, 0.4],
            "velocity_limit": [np.pi] * 6 + [0.5],
            "state_topics": {f"/{ns}/joint_states": [*arm, knuckle]},
            "controllers": [
                Controller("scaled_joint_trajectory_controller", "trajectory", tuple(arm)),
                Controller("forward_position_controller", "forward", tuple(arm), "inactive"),
                Controller("robotiq_gripper_controller", "gripper", (knuckle,)),
            ],
            "gripper_action": {"robotiq_gripper_controller": "gripper_cmd"},
            "gripper_range": {"robotiq_gripper_controller": (0.0, 0.8)},
        }
    return out


def fr3_robots(namespaces=("left", "right")) -> dict:
    """Two FR3 arms with Franka Hands as franka_ros2 publishes them (one robot per namespace)."""
    out = {}
    for ns in namespaces:
        arm = [f"fr3_joint{i}" for i in range(1, 8)]
        fingers = ["fr3_finger_joint1", "fr3_finger_joint2"]
        out[ns] = {
            "joints": [*arm, *fingers],
            "home": [0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785, 0.02, 0.02],
            "velocity_limit": [2.62] * 4 + [5.26, 4.18, 5.26] + [0.2, 0.2],
            "state_topics": {
                f"/{ns}/franka/joint_states": arm,
                f"/{ns}/franka_gripper/joint_states": fingers,
            },
            "controllers": [
                Controller("fr3_arm_controller", "trajectory", tuple(arm)),
                Controller("franka_gripper", "gripper", ("fr3_finger_joint1",)),
            ],
            "gripper_action": {"franka_gripper": "gripper_action"},
            "gripper_range": {"franka_gripper": (0.0, 0.04)},
        }
    return out


class Fr3StandIn(Ros2ControlStandIn):
    def __init__(self, **kwargs):
        super().__init__("fr3_standin", fr3_robots(), **kwargs)

    def _on_gripper(self, ns, ctrl, handle):
        result = super()._on_gripper(ns, ctrl, handle)
        arm = self.arms[ns]  # both fingers travel together: each is half the opening
        with self.lock:
            arm.target[arm.names.index("fr3_finger_joint2")] = arm.target[
                arm.names.index("fr3_finger_joint1")]  # fmt: skip
        return result


def wait(predicate, timeout: float, period: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(period)
    return bool(predicate())


# --- the test side: the policy's seat ------------------------------------------------------
class Harness(Node):
    """The policy's seat: chunks out, the executor's diagnostics in, its enable service."""

    def __init__(self):
        super().__init__("driver_test_harness")
        self.chunks = self.create_publisher(ActionChunk, "/policy/action_chunk", 10)
        self.diagnostics: dict[str, str] = {}
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)
        self.enable_client = self.create_client(SetBool, "/action_executor/enable")

    def _on_diag(self, msg) -> None:
        for status in msg.status:
            if status.name.startswith("action_executor"):
                self.diagnostics = {kv.key: kv.value for kv in status.values}

    def enable(self, on: bool = True):
        assert self.enable_client.wait_for_service(timeout_sec=20.0), "no ~/enable service"
        future = self.enable_client.call_async(SetBool.Request(data=on))
        assert wait(future.done, 10.0), "~/enable did not answer"
        return future.result()

    def send_pose(self, emb, target) -> None:
        horizon = 64  # 0.5 s at 125 Hz: outlasts a stalled executor in the streaming checks
        actions = np.tile(np.asarray(target, dtype=np.float32), (horizon, 1))
        stamp = self.get_clock().now().nanoseconds * 1e-9
        chunk = cv.ChunkArrays(stamp, 1.0 / emb.control_frequency,
                               np.asarray(emb.action_slots), actions, "driver-test")  # fmt: skip
        self.chunks.publish(cv.chunk_to_msg(chunk, ActionChunk))


class Spinning:
    """Nodes spun in background threads, each on its own executor."""

    def __init__(self):
        self.executors = []

    def add(self, node):
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        threading.Thread(target=executor.spin, daemon=True).start()
        self.executors.append((executor, node))
        return node

    def remove(self, node):
        for executor, n in list(self.executors):
            if n is node:
                executor.shutdown()
                n.destroy_node()
                self.executors.remove((executor, n))

    def close(self):
        for executor, node in self.executors:
            executor.shutdown()
            node.destroy_node()

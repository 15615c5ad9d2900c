"""The sim episode client: reset an episode, wait for its outcome, collect the result.

One small ROS node over the `sim` bringup, in the style of nav2_simple_commander's
`BasicNavigator`: `demo`, `collect` and `evaluate` are thin command lines over it.

    with BringupRunner(description.describe("sim", given)) as runner:
        with SimClient(runner, policy=True) as client:
            client.wait_until(client.ready, 180.0, "the nodes to be ready")
            result = client.run_episode(episode=1, seed=1000, steps=400, timeout=300.0)

Each episode resets the sim with a seed (`/sim/reset`), then the action executor (`~/reset`:
drops the last episode's chunks, also those still in flight, and restarts from the reset arms)
and the policy (`~/reset_episode`: clears its observation history and sampler state), then
follows `/sim/episode_status` until success or the episode's end. With `policy`, the client
also counts the policy's chunks and keeps their inference latencies. A node of the bringup that
stops while the client waits ends the wait with a RuntimeError naming it.

Also here: what the three command lines set on the bringup's nodes (`with_parameters`,
`sim_overrides`) and each task's episode length.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from action_diffusion_bringup import description
from action_diffusion_bringup.description import NodeSpec

STATUS_TOPIC = "/sim/episode_status"
RESET_SERVICE = "/sim/reset"
POLICY_RESET_SERVICE = "/policy/reset_episode"
EXECUTOR_RESET_SERVICE = "/action_executor/reset"
POLICY_STATE_SERVICE = "/policy/get_state"  # lifecycle_msgs/GetState of the policy node
# Episode length (control steps) of the ACT sim tasks: 8 s / 9 s at 50 Hz.
EPISODE_STEPS = {"transfer_cube": 400, "insertion": 450}


@dataclass
class EpisodeResult:
    episode: int
    seed: int
    success: bool
    steps: int
    reward: int
    max_reward: int
    wall_s: float
    chunks: int  # ActionChunks the policy published during the episode (0 with the expert)


# --- the bringup's nodes ----------------------------------------------------------------------


def with_parameters(specs: list[NodeSpec], node: str, **params) -> list[NodeSpec]:
    """The specs with extra inline parameters for one node (they win over its YAML files)."""
    out = []
    for spec in specs:
        if spec.name == node:
            kept = tuple((k, v) for k, v in spec.parameters if k not in params)
            spec = dataclasses.replace(spec, parameters=kept + tuple(params.items()))
        out.append(spec)
    return out


def sim_overrides(cameras: list[str], real_time_factor: float, steps: int) -> dict:
    """Sim parameters for a run: which cameras render, how fast, how long an episode is."""
    return {
        # An empty list cannot be typed as a string array in a ROS parameter: no camera is
        # rendered when the rate is 0.
        "cameras": cameras or ["cam_high"],
        "camera_rate": 25.0 if cameras else 0.0,
        "real_time_factor": float(real_time_factor),
        "episode_length": int(steps),
    }


# --- the client -------------------------------------------------------------------------------


class SimClient:
    """A ROS node that drives the sim bringup's episodes (its own spinning thread).

    runner: the BringupRunner of the nodes (its `exited()` ends a wait early), or None.
    policy: the policy node and action executor run (reset them too; count their chunks).
    Initializes rclpy unless it already is, and shuts it down again on `close()`.
    """

    def __init__(self, runner=None, policy: bool = False, node_name: str = "sim_client") -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        from action_diffusion_msgs.msg import ActionChunk, EpisodeStatus
        from action_diffusion_msgs.srv import ResetEpisode

        self._rclpy = rclpy
        self._owns_rclpy = not rclpy.ok()
        if self._owns_rclpy:
            rclpy.init()
        self.runner = runner
        self._ResetEpisode = ResetEpisode
        self.node = rclpy.create_node(node_name)
        self._lock = threading.Lock()
        self.status = None
        self.chunks = 0  # ActionChunks seen (policy mode), to report that the policy acted
        self.latencies: list[float] = []  # each chunk's inference_latency (s)
        self.commands: dict[str, list] = {}  # arm -> the executor's commands this episode
        self.executor_diagnostics: dict[str, str] = {}  # the action executor's last values
        self.command_period = 0.02
        # Called with the seed after each reset (in the caller's thread), e.g. to restart a
        # recording of the new episode.
        self.on_reset: list[Callable[[int], None]] = []
        self.node.create_subscription(EpisodeStatus, STATUS_TOPIC, self._on_status, 10)
        self.reset_client = self.node.create_client(ResetEpisode, RESET_SERVICE)
        # The policy is ready once its lifecycle state is active (configured with the
        # checkpoint loaded).
        self.policy_reset_client = None
        self.policy_state_client = None
        self.executor_reset_client = None
        self._policy_active = False
        self._state_request = None
        if policy:
            from lifecycle_msgs.srv import GetState
            from std_srvs.srv import Trigger

            self._GetState = GetState
            self._Trigger = Trigger
            self.executor_reset_client = self.node.create_client(Trigger, EXECUTOR_RESET_SERVICE)
            self.policy_reset_client = self.node.create_client(ResetEpisode, POLICY_RESET_SERVICE)
            self.policy_state_client = self.node.create_client(GetState, POLICY_STATE_SERVICE)
            self.node.create_subscription(
                ActionChunk, description.ACTION_CHUNK_TOPIC, self._on_chunk, 10
            )
            # The executor's commands, for the smoothness figures (per-tick step, jerk).
            from diagnostic_msgs.msg import DiagnosticArray
            from std_msgs.msg import Float64MultiArray

            from unified_action_space import load_embodiment

            self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)
            sim = load_embodiment(description.SIM_EMBODIMENT, kinematics=False)
            self.command_period = 1.0 / sim.control_frequency
            for arm in sim.arms:
                self.commands[arm.name] = []
                self.node.create_subscription(
                    Float64MultiArray, arm.command_topic,
                    lambda msg, a=arm.name: self.commands[a].append(tuple(msg.data)), 100,
                )  # fmt: skip
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self._spinner = threading.Thread(target=self._spin, daemon=True)
        self._spinner.start()

    def _spin(self) -> None:
        with contextlib.suppress(Exception):  # the executor shuts down under it at the end
            self.executor.spin()

    def _on_status(self, msg) -> None:
        with self._lock:
            self.status = msg

    def _on_diag(self, msg) -> None:
        for status in msg.status:
            if status.name.startswith("action_executor"):
                self.executor_diagnostics = {kv.key: kv.value for kv in status.values}

    def _on_chunk(self, msg) -> None:
        self.chunks += 1
        self.latencies.append(float(msg.inference_latency))

    # --- state --------------------------------------------------------------------------------

    def latest_status(self):
        """The sim's last EpisodeStatus, or None before the first."""
        with self._lock:
            return self.status

    def sim_time(self) -> float | None:
        """Sim time (s) of the last EpisodeStatus, or None before the first."""
        status = self.latest_status()
        if status is None:
            return None
        return status.header.stamp.sec + status.header.stamp.nanosec * 1e-9

    def ready(self) -> bool:
        """The sim offers its reset service and, with a policy, the policy node is active."""
        if not self.reset_client.service_is_ready():
            return False
        if self.executor_reset_client and not self.executor_reset_client.service_is_ready():
            return False
        if self.policy_state_client is None or self._policy_active:
            return True
        if self._state_request is not None and self._state_request.done():
            state = self._state_request.result().current_state
            self._policy_active = state.label == "active"
            self._state_request = None
        elif self._state_request is None and self.policy_state_client.service_is_ready():
            self._state_request = self.policy_state_client.call_async(self._GetState.Request())
        return False

    # --- actions ------------------------------------------------------------------------------

    def call(self, client, request, timeout: float, check: bool = True):
        """Call a service and wait for its answer; ``check``: refuse ``success: false``."""
        future = client.call_async(request)
        deadline = time.monotonic() + timeout
        while not future.done():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{client.srv_name} did not answer within {timeout:.0f} s")
            time.sleep(0.01)
        response = future.result()
        if check and not response.success:
            raise RuntimeError(f"{client.srv_name} refused: {response.message}")
        return response

    def reset(self, seed: int, timeout: float) -> int:
        """Reset the sim with ``seed``, then the executor and the policy; returns the seed."""
        request = self._ResetEpisode.Request(seed=seed, use_seed=True)
        seed = self.call(self.reset_client, request, timeout).seed
        if self.executor_reset_client is not None:
            self.call(self.executor_reset_client, self._Trigger.Request(), timeout)
        if self.policy_reset_client is not None:
            self.call(self.policy_reset_client, request, timeout)
        for callback in self.on_reset:
            callback(seed)
        return seed

    def wait_until(self, predicate: Callable[[], object], timeout: float, what: str) -> None:
        """Wait for ``predicate()``; TimeoutError after ``timeout`` s, RuntimeError as soon as
        a node of the runner stopped."""
        deadline = time.monotonic() + timeout
        while not predicate():
            exited = self.runner.exited() if self.runner is not None else {}
            if exited:
                raise RuntimeError(f"node(s) stopped while waiting for {what}: {exited}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {what} within {timeout:.0f} s")
            time.sleep(0.02)

    def run_episode(self, episode: int, seed: int, steps: int, timeout: float) -> EpisodeResult:
        """Reset with ``seed``, wait until success or ``steps`` steps (at most ``timeout`` wall
        seconds), and return the outcome."""
        start = time.monotonic()
        seed = self.reset(seed, timeout=30.0)
        chunks_before = self.chunks
        for received in self.commands.values():
            received.clear()

        def current():
            status = self.latest_status()
            return status if status is not None and status.seed == seed else None

        self.wait_until(lambda: current() is not None, 30.0, f"status of the episode seed {seed}")
        self.wait_until(
            lambda: current().success or current().step >= steps,
            timeout,
            f"the end of episode {episode} (seed {seed})",
        )
        status = current()
        return EpisodeResult(
            episode=episode,
            seed=seed,
            success=bool(status.success),
            steps=int(status.step),
            reward=int(status.reward),
            max_reward=int(status.max_reward),
            wall_s=round(time.monotonic() - start, 2),
            chunks=self.chunks - chunks_before,
        )

    def smoothness(self) -> dict:
        """This episode's executed commands: the largest per-tick step (rad or m) and the
        mean absolute jerk (third difference / period^3), over every arm and joint, from 0.5 s
        after the reset on."""
        # The first 0.5 s are left out: commands of the last episode still in flight, and the
        # executor's restart from the measured state after the reset, are no step it took.
        skip = round(0.5 / self.command_period)
        rows = [np.asarray(c[skip:], dtype=np.float64) for c in self.commands.values()
                if len(c) > skip + 3]  # fmt: skip
        if not rows:
            return {"max_step": None, "mean_jerk": None, "commands": 0}
        steps = max(float(np.abs(np.diff(r, axis=0)).max()) for r in rows)
        jerk = float(np.mean([np.abs(np.diff(r, n=3, axis=0)).mean() for r in rows]))
        return {"max_step": round(steps, 5), "mean_jerk": round(jerk / self.command_period**3, 3),
                "commands": int(min(len(r) for r in rows))}  # fmt: skip

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        if self._owns_rclpy:
            self._rclpy.try_shutdown()

    def __enter__(self) -> SimClient:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()

"""Policy node (lifecycle): camera images + robot state -> ActionChunk, inference off the
callback thread.

Lifecycle:
  configure   loads the checkpoint, checks it fits the embodiment (fails with the reasons),
              creates the subscriptions and the publisher
  activate    starts the inference worker thread (and the diagnostics timer)
  deactivate  stops the worker
  cleanup     releases subscriptions, publisher and the model
With ``autostart`` (default true) the node configures and activates itself, so it runs without
a lifecycle manager.

Subscribes:
  ``camera_topics[i]``   sensor_msgs/Image, or sensor_msgs/CompressedImage on
                         ``<topic>/compressed`` with ``compressed: true``; one topic per checkpoint
                         camera (``spec.camera_names`` order)
  ``unified_state_topic`` action_diffusion_msgs/UnifiedState (``state_source: unified_state``),
                         or each arm's joint-state topic (``state_source: joint_states``; no
                         state while an arm has been silent for more than ``stale_timeout``)
  ``env_state_topic``    action_diffusion_msgs/EpisodeStatus (object_poses), only for
                         checkpoints with env_state_dim > 0
Publishes:
  ``~/action_chunk``     action_diffusion_msgs/ActionChunk, stamped with the observation time
                         (bringup remaps it to /policy/action_chunk)
  ``/diagnostics``       latency, rate, dropped observations (1 Hz)
Real-time chunking (``strategy: rtc``, Black et al. 2025): the node keeps the last chunk it
published, which the executor (also ``rtc``) runs from its arrival on, and conditions the next
one on it: the rows the executor will run while this inference takes ``d`` control steps are
frozen and the rest inpainted (``predict_chunk(prefix=..., delay=d)``). ``d`` is estimated from
the measured observation-to-publish latency (a running mean); when ``d`` reaches the horizon
the node samples without a prefix and counts it (``rtc_fallbacks`` in ``/diagnostics``).
``added_delay`` (s, default 0) holds each chunk back that long after its observation (on the
node's clock) before publishing: the latency study's injected delay, through the real nodes.
Inference path (``inference_path``, default ``auto``): at configure the node times the paths
this machine offers (fp32 / bf16 where the CPU has native bf16, traced; compiled where a C++
compiler is present and chunks take >= 50 ms) on a probe observation, keeps the fastest whose
chunk matches fp32 eager (``inference_paths.TOLERANCE``), and logs the table; ``/diagnostics``
says which (``inference_path``). A path can be named instead (``bf16-autotune``, ...).
``fresh_observations`` (default false): after each chunk, wait for a frame captured after it,
so a frame's wait in the buffer is not latency (``image_delivery_*`` in ``/diagnostics`` is the
frames' transport time).
Services:
  ``~/reset_episode``    action_diffusion_msgs/ResetEpisode: clears history and sampler state
  ``~/set_instruction``  action_diffusion_msgs/SetInstruction
"""

from __future__ import annotations

import dataclasses
import math
import sys
import threading
import time
from collections import deque

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.lifecycle import Node as LifecycleNode
from rclpy.lifecycle import State, TransitionCallbackReturn
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image, JointState

from action_diffusion_msgs.msg import ActionChunk, EpisodeStatus, UnifiedState
from action_diffusion_msgs.srv import ResetEpisode, SetInstruction
from action_diffusion_policy.runtime import conversions as cv
from action_diffusion_policy.runtime.observation_buffer import BufferConfig, ObservationBuffer
from action_diffusion_policy.runtime.policy_fit import default_camera_topics, policy_fit_problems
from unified_action_space.conversions import joint_state_from_msg, unified_state_from_msg
from unified_action_space.nodes.joint_state_inputs import subscribe_joint_states
from unified_action_space.nodes.node_main import run_node
from unified_action_space.state_assembler import StateAssembler, describe_problems

GIL_SWITCH_INTERVAL_S = 0.001
FRESH_WAIT_S = 0.5

STATE_SOURCES = ("unified_state", "joint_states")


class LatencyStats:
    """Rolling per-stage timings of the last chunks (seconds)."""

    STAGES = ("waiting", "preprocessing", "inference", "publishing", "total")

    def __init__(self, n: int = 200):
        self.samples = {k: deque(maxlen=n) for k in self.STAGES}
        self.totals = dict.fromkeys(self.STAGES, 0.0)  # since start: readers difference them
        self.count = 0
        self.publish_times: deque[float] = deque(maxlen=n)

    def add(self, **stages: float) -> None:
        for k, v in stages.items():
            self.samples[k].append(v)
            self.totals[k] += v
        self.count += 1
        self.publish_times.append(time.monotonic())

    def summary(self) -> dict[str, float]:
        out = {f"{k}_total_ms": 1e3 * v for k, v in self.totals.items()}
        out["count"] = self.count
        if not self.count:
            return {}
        for k, v in self.samples.items():
            if v:
                a = np.asarray(v)
                out[f"{k}_mean_ms"] = 1e3 * float(a.mean())
                out[f"{k}_p95_ms"] = 1e3 * float(np.percentile(a, 95))
        if len(self.publish_times) > 1:
            span = self.publish_times[-1] - self.publish_times[0]
            out["rate_hz"] = (len(self.publish_times) - 1) / span if span > 0 else 0.0
        return out


class PolicyNode(LifecycleNode):
    def __init__(self, node_name: str = "policy", **kwargs):
        super().__init__(node_name, **kwargs)
        p = self.declare_parameter
        p("checkpoint", "")
        p("embodiment", "aloha_sim")
        # Empty (or [""]): the embodiment's topic of each checkpoint camera (else
        # /cameras/<name>/image_raw). Dynamic typing so that an empty list from YAML or the
        # command line is accepted.
        p("camera_topics", [""], ParameterDescriptor(dynamic_typing=True))
        p("compressed", False)
        p("state_source", "unified_state")
        p("unified_state_topic", "/unified_state")
        p("env_state_topic", "")
        p("inference_rate", 0.0)  # Hz; 0 = as fast as possible
        p("device", "cpu")
        p("num_inference_steps", 0)  # 0 = the checkpoint's
        p("instruction", "")
        p("stamp_tolerance", 0.05)
        p("future_tolerance", 0.1)
        # state_source joint_states: an arm silent for longer (s) stops the state, so a frozen
        # driver cannot feed the policy its last joint state forever.
        p("stale_timeout", 0.5)
        p("torch_threads", 0)  # 0 = torch's default
        # auto: time the inference paths this machine offers (fp32/bf16, traced/compiled) at
        # configure and take the fastest whose chunk matches fp32 eager (inference_paths);
        # or one path by name (fp32, fp32-jit, bf16-jit, bf16-compile, ...).
        p("inference_path", "auto")
        # true: after each chunk, wait for a frame that arrives after it instead of taking one
        # that waited in the buffer (fresher observations, a little less chunk rate).
        p("fresh_observations", False)
        p("autostart", True)
        p("strategy", "temporal_ensembling")  # rtc: condition each chunk on the last one
        p("added_delay", 0.0)  # s held back after each observation (latency study)
        # identity (no gradients, about 1/3 of vjp's time) was chosen on validation seeds
        # 2000-2009: 10/10 and 9/10 at delays 4 and 8 against vjp's (the paper's) 8/10, 9/10.
        p("rtc_guidance", "identity")

        self._lock = threading.Lock()
        self._new_data = threading.Event()
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        self._subs = []
        self._chunk_pub = None
        self._diag_pub = None
        self._diag_timer = None
        self.policy = None
        self.spec = None
        self.embodiment = None
        self.buffer: ObservationBuffer | None = None
        self.instruction = self._param("instruction")
        self.stats = LatencyStats()
        self.counters = {
            "chunks": 0,
            "image_rejected": 0,
            "stale": 0,
            "policy_errors": 0,
            "nonfinite_chunks": 0,
            "state_errors": 0,
            "env_state_rejected": 0,
            "stale_state": 0,
            "rtc_chunks": 0,
            "rtc_fallbacks": 0,
        }
        self._last_chunk: tuple[float, float, np.ndarray] | None = None  # stamp, step, actions
        self._latency_estimate: float | None = None  # s, observation -> publish (running mean)
        self._rtc_delay = 0  # control steps of the last real-time chunked inference
        self.assembler: StateAssembler | None = None  # state_source joint_states
        self._last_state_stamp = -math.inf
        self._resized_warned: set[str] = set()
        self._frame_decoders: dict[str, cv.CameraFrameDecoder] = {}
        self.last_image_problem = ""  # the newest rejected frame's reason, for /diagnostics
        self.waiting_reason = ""  # why no chunk is being made now, for /diagnostics
        self._sequence = 0
        self.configure_error = ""
        self.inference_path = ""
        self._image_delivery: deque[float] = deque(maxlen=200)
        self.create_service(ResetEpisode, "~/reset_episode", self._on_reset)
        self.create_service(SetInstruction, "~/set_instruction", self._on_set_instruction)

    def _param(self, name: str):
        return self.get_parameter(name).value

    # --- lifecycle -------------------------------------------------------------------------
    def on_configure(self, state: State) -> TransitionCallbackReturn:
        self.configure_error = ""
        try:
            self._configure()
        except Exception as exc:  # any failure leaves the node unconfigured, with the reason
            self.configure_error = str(exc)
            self.get_logger().error(f"configure failed: {exc}")
            self._release()
            return TransitionCallbackReturn.FAILURE
        return TransitionCallbackReturn.SUCCESS

    def _configure(self) -> None:
        from action_diffusion_policy.checkpoint import load_policy
        from unified_action_space import load_embodiment

        checkpoint = self._param("checkpoint")
        if not checkpoint:
            raise ValueError("parameter checkpoint is empty; give a checkpoint directory")
        state_source = self._param("state_source")
        if state_source not in STATE_SOURCES:
            raise ValueError(f"parameter state_source={state_source!r}: use one of {STATE_SOURCES}")
        from action_diffusion_policy.runtime.ensembler import STRATEGIES

        if self._param("strategy") not in STRATEGIES:
            raise ValueError(f"parameter strategy={self._param('strategy')!r}: use one of "
                             f"{STRATEGIES} (the executor's)")  # fmt: skip
        from action_diffusion_policy.heads import RTC_JACOBIANS

        if self._param("rtc_guidance") not in RTC_JACOBIANS:
            raise ValueError(f"parameter rtc_guidance={self._param('rtc_guidance')!r}: use one "
                             f"of {RTC_JACOBIANS}")  # fmt: skip
        if not float(self._param("added_delay")) >= 0:
            raise ValueError(f"parameter added_delay={self._param('added_delay')!r}: s >= 0")
        # The inference worker is a Python thread: with CPython's default 5 ms GIL switch
        # interval each rclpy callback (several GIL hand-offs) waited behind it, and the node
        # took ~20 of 100 joint-state messages a second, dropping the rest (best-effort QoS)
        # and seeing live arms as stale. 1 ms lets the callbacks through.
        sys.setswitchinterval(min(sys.getswitchinterval(), GIL_SWITCH_INTERVAL_S))
        threads = int(self._param("torch_threads"))
        if threads > 0:
            import torch

            torch.set_num_threads(threads)
        self.embodiment = emb = load_embodiment(self._param("embodiment"))
        self.policy = load_policy(checkpoint, device=self._param("device"))
        self.spec = spec = self.policy.spec
        self._set_inference_steps(int(self._param("num_inference_steps")))
        self._choose_inference_path(str(self._param("inference_path")))  # at the real steps
        topics = [str(t) for t in (self._param("camera_topics") or []) if t]
        by_hand = bool(topics)
        if not topics:
            topics = default_camera_topics(spec.camera_names, emb.camera_topics)
        env_topic = self._param("env_state_topic") if spec.env_state_dim > 0 else ""
        problems = policy_fit_problems(
            spec, emb.name, emb.action_slots, emb.state_mask, topics, env_topic,
            embodiment_cameras=None if by_hand else emb.camera_topics,
        )
        # build_dataset's decoder, one per camera: live frames get the training data's pixels.
        self._frame_decoders = {
            cam: cv.CameraFrameDecoder(cam, spec.image_size) for cam in spec.camera_names
        }
        if problems:
            raise ValueError(
                f"checkpoint {checkpoint} does not fit embodiment {emb.name!r}: "
                + "; ".join(problems)
            )
        if spec.embodiments and emb.name not in spec.embodiments:
            self.get_logger().warn(
                f"checkpoint was trained on {spec.embodiments}, running on {emb.name!r}"
            )
        if abs(spec.control_frequency - emb.control_frequency) > 1e-6:
            self.get_logger().warn(
                f"checkpoint control frequency {spec.control_frequency} Hz differs from the "
                f"embodiment's {emb.control_frequency} Hz; chunks keep the checkpoint's period"
            )
        if getattr(self.policy.config, "lang_dim", 0) and self.instruction:
            self.get_logger().warn(
                "checkpoint takes language embeddings but no text encoder is available here; "
                "running without the instruction"
            )

        self.buffer = ObservationBuffer(
            BufferConfig(
                camera_names=tuple(spec.camera_names),
                n_obs_steps=spec.n_obs_steps,
                obs_period=1.0 / spec.control_frequency,
                stamp_tolerance=float(self._param("stamp_tolerance")),
                future_tolerance=float(self._param("future_tolerance")),
                use_env_state=spec.env_state_dim > 0,
            )
        )
        compressed = bool(self._param("compressed"))
        for cam, topic in zip(spec.camera_names, topics):
            if compressed:
                topic = topic if topic.endswith("/compressed") else f"{topic}/compressed"
            self._subs.append(self.create_subscription(
                CompressedImage if compressed else Image, topic,
                lambda msg, c=cam: self._on_image(c, msg), qos_profile_sensor_data,
            ))  # fmt: skip
        if state_source == "unified_state":
            self._subs.append(self.create_subscription(
                UnifiedState, self._param("unified_state_topic"), self._on_unified_state,
                qos_profile_sensor_data,
            ))  # fmt: skip
        else:
            self.assembler = StateAssembler(emb, float(self._param("stale_timeout")))
            self._subs += subscribe_joint_states(self, emb, self._on_joint_state)
        if env_topic:
            self._subs.append(self.create_subscription(
                EpisodeStatus, env_topic, self._on_episode_status, QoSProfile(depth=10)
            ))  # fmt: skip
        self._chunk_pub = self.create_lifecycle_publisher(
            ActionChunk, "~/action_chunk", QoSProfile(depth=10)
        )
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.get_logger().info(
            f"configured: checkpoint {spec.checkpoint_id} ({type(self.policy).__name__}, "
            f"horizon {spec.horizon}, {len(spec.action_slots)} slots, cameras "
            f"{dict(zip(spec.camera_names, topics))}, state from {state_source}) on "
            f"{emb.name}"
        )

    def _choose_inference_path(self, name: str) -> None:
        from action_diffusion_policy.inference_paths import (
            PATH_NAMES,
            apply_path,
            select_inference_path,
        )

        if name == "auto":
            self.get_logger().info(
                "timing the inference paths on this machine (where chunks take >= 50 ms a "
                "compiled path is tried too: tens of seconds the first time)")
            self.policy, report = select_inference_path(self.policy)
            self.inference_path = report.chosen
            self.get_logger().info(report.summary())
            return
        if name not in PATH_NAMES:
            raise ValueError(f"parameter inference_path={name!r}: use auto or one of "
                             f"{PATH_NAMES}")  # fmt: skip
        apply_path(self.policy.eval(), name)
        self.inference_path = name
        self.get_logger().info(f"inference path {name} (set by parameter)")

    def _set_inference_steps(self, steps: int) -> None:
        """``num_inference_steps`` (0: the checkpoint's) through PolicyConfig's validation, so a
        value the sampler cannot run fails configure instead of every inference."""
        if steps == 0:
            return
        try:
            config = dataclasses.replace(self.policy.config, num_inference_steps=steps)
        except ValueError as exc:  # ConfigError names the field, the value and what is allowed
            raise ValueError(f"parameter num_inference_steps={steps}: {exc}") from exc
        self.policy.config = config
        self.policy.head.num_inference_steps = config.num_inference_steps  # the sampler's

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        self._stop.clear()
        self._sequence = 0
        self._worker = threading.Thread(target=self._run_worker, name="inference", daemon=True)
        self._worker.start()
        self._diag_timer = self.create_timer(1.0, self._publish_diagnostics)
        self.get_logger().info("active: inference running")
        return super().on_activate(state)

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        self._stop_worker()
        return super().on_deactivate(state)

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: State) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def _stop_worker(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._new_data.set()
        if self._worker is not None:
            self._worker.join(timeout=timeout)
            self._worker = None
        if self._diag_timer is not None:
            self.destroy_timer(self._diag_timer)
            self._diag_timer = None

    def destroy_node(self):
        self._stop_worker()  # before its publisher and context go
        return super().destroy_node()

    def _release(self) -> None:
        self._stop_worker()
        for sub in self._subs:
            self.destroy_subscription(sub)
        self._subs = []
        if self._chunk_pub is not None:
            self.destroy_lifecycle_publisher(self._chunk_pub)
            self._chunk_pub = None
        if self._diag_pub is not None:
            self.destroy_publisher(self._diag_pub)
            self._diag_pub = None
        self.policy = None
        self.buffer = None
        self.assembler = None

    # --- inputs (callbacks only store; never block) ----------------------------------------
    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _add(self, source: str, stamp: float, payload) -> None:
        buffer = self.buffer
        if buffer is None:
            return
        with self._lock:
            result = buffer.add(source, stamp, payload, self._now())
        if result == "accepted":
            self._new_data.set()
        else:
            self.get_logger().warn(
                f"dropped a {source} message stamped {stamp:.3f}: {result}",
                throttle_duration_sec=5.0,
            )

    def _on_image(self, camera: str, msg) -> None:
        try:
            self._frame_decoders[camera].check(msg)
        except cv.ImageError as exc:
            self.counters["image_rejected"] += 1
            self.last_image_problem = str(exc)
            self.get_logger().warn(f"{camera}: image rejected: {exc}", throttle_duration_sec=5.0)
            return
        stamp = cv.stamp_to_seconds(msg.header.stamp)
        self._image_delivery.append(self._now() - stamp)  # camera stamp -> here (transport)
        self._add(camera, stamp, (camera, msg))

    def _on_unified_state(self, msg: UnifiedState) -> None:
        try:
            state = unified_state_from_msg(msg)
        except ValueError as exc:  # wrong sizes: Jazzy does not check them
            self.counters["state_errors"] += 1
            self.get_logger().warn(f"unified state rejected: {exc}", throttle_duration_sec=5.0)
            return
        self._add("state", state.stamp, (state.values, state.mask))

    def _on_joint_state(self, arm: str, msg: JointState, topic: str | None = None) -> None:
        assembler = self.assembler
        if assembler is None:
            return
        try:
            js = joint_state_from_msg(msg)
        except ValueError as exc:  # positions and names of different lengths
            self.counters["state_errors"] += 1
            self.get_logger().warn(f"{arm} joint state rejected: {exc}", throttle_duration_sec=5.0)
            return
        stamp, names, positions, velocities = js.stamp, js.names, js.positions, js.velocities
        now_ns = self.get_clock().now().nanoseconds
        assembler.update(arm, names, positions, velocities, stamp, now_ns, topic)
        if not assembler.complete:
            return
        if assembler.newest_stamp() <= self._last_state_stamp:
            return  # the other arm's message of the same tick already made this state
        try:
            state, problems = assembler.assemble(now_ns)
        except ValueError as exc:  # JointStateError: missing joint, non-finite value
            self.counters["state_errors"] += 1
            self.get_logger().warn(f"joint state rejected: {exc}", throttle_duration_sec=5.0)
            return
        if problems:  # an arm went silent: no state, so no new observation for the policy
            self.counters["stale_state"] += 1
            self.get_logger().warn(
                f"no state for the policy: {describe_problems(problems)}",
                throttle_duration_sec=5.0,
            )
            return
        self._last_state_stamp = state.stamp
        self._add("state", state.stamp, (state.values, state.mask))

    def _on_episode_status(self, msg: EpisodeStatus) -> None:
        poses = np.asarray(msg.object_poses, dtype=np.float32)
        if poses.size != self.spec.env_state_dim or not np.isfinite(poses).all():
            self.counters["env_state_rejected"] += 1
            self.get_logger().warn(
                f"episode status object_poses has {poses.size} values, checkpoint needs "
                f"{self.spec.env_state_dim} finite ones; ignored",
                throttle_duration_sec=5.0,
            )
            return
        self._add("env_state", cv.stamp_to_seconds(msg.header.stamp), poses)

    # --- services --------------------------------------------------------------------------
    def _on_reset(self, request, response):
        with self._lock:
            if self.buffer is not None:
                self.buffer.clear()
            if self.assembler is not None:
                self.assembler.clear()
            self._last_state_stamp = -math.inf
            self._last_chunk = None  # a new episode continues no chunk
        if self.policy is not None:
            self.policy.reset()
        response.success = True
        response.message = "observation history and sampler state cleared"
        response.seed = int(request.seed) if request.use_seed else 0
        self.get_logger().info("episode reset")
        return response

    def _on_set_instruction(self, request, response):
        self.instruction = request.instruction
        response.success = True
        response.message = f"instruction set to {request.instruction!r}"
        if self.policy is not None and getattr(self.policy.config, "lang_dim", 0):
            response.message += " (no text encoder here: not used by this checkpoint)"
        self.get_logger().info(response.message)
        return response

    # --- inference worker ------------------------------------------------------------------
    def _decode(self, payload) -> np.ndarray:
        camera, msg = payload
        size = self.spec.image_size
        if size is not None and not hasattr(msg, "format") and (msg.height, msg.width) != size:
            key = f"{camera} {msg.width}x{msg.height}"
            if key not in self._resized_warned:
                self._resized_warned.add(key)
                self.get_logger().info(
                    f"{camera}: resizing {msg.width}x{msg.height} images to the checkpoint's "
                    f"{size[1]}x{size[0]}"
                )
        return self._frame_decoders[camera](msg)

    def _run_worker(self) -> None:
        rate = float(self._param("inference_rate"))
        period = 1.0 / rate if rate > 0 else 0.0
        last_stamp = -math.inf
        last_reason = ""
        last_progress = time.monotonic()
        fresh = bool(self._param("fresh_observations"))
        fresh_after, fresh_until = -math.inf, -math.inf  # node clock; monotonic
        while not self._stop.is_set():
            started = time.monotonic()
            with self._lock:
                selection, reason = self.buffer.select()
                self._new_data.clear()
            # A camera or arm that stopped shows in /diagnostics, not only in the log.
            self.waiting_reason = (
                f"no new complete observation for {started - last_progress:.1f} s: "
                f"{reason or 'a source stopped or lags'}"
                if started - last_progress > 0.5 else "")
            if started - last_progress > 2.0:
                self.get_logger().warn(
                    f"no new complete observation for {started - last_progress:.1f} s "
                    f"({reason or 'a source stopped or lags'}; newest per source: "
                    f"{self.buffer.newest_stamps()})",
                    throttle_duration_sec=5.0,
                )
            # fresh_observations: a frame captured after the last chunk was done, so its wait
            # in the buffer is not latency (give up after FRESH_WAIT_S: the camera's clock may
            # lag this node's).
            stale_for_fresh = (selection is not None and selection.stamp < fresh_after
                               and time.monotonic() < fresh_until)  # fmt: skip
            if selection is None or selection.stamp <= last_stamp or stale_for_fresh:
                if selection is None and reason.startswith("stale") and reason != last_reason:
                    self.counters["stale"] += 1
                    self.get_logger().warn(
                        f"no observation: {reason} (inputs more than "
                        f"{self.buffer.config.stamp_tolerance} s apart)",
                        throttle_duration_sec=5.0,
                    )
                last_reason = reason
                self._new_data.wait(timeout=0.05)
                continue
            last_reason = ""
            last_progress = started
            try:
                self._infer(selection)
            except Exception as exc:  # a bad frame or a model error must not kill the loop
                if self._stop.is_set():  # stopping: the publisher or buffer went under it
                    break
                self.counters["policy_errors"] += 1
                self.get_logger().error(f"inference failed: {exc}", throttle_duration_sec=5.0)
            last_stamp = selection.stamp
            if fresh:
                fresh_after, fresh_until = self._now(), time.monotonic() + FRESH_WAIT_S
            if period:
                self._stop.wait(max(0.0, period - (time.monotonic() - started)))

    def _infer(self, selection) -> None:
        waiting = self._now() - selection.stamp
        t0 = time.perf_counter()
        assembled = self.buffer.build(selection, self._decode)
        obs = assembled.to_observation(self.spec.control_frequency)
        t1 = time.perf_counter()
        actions = self._predict(obs, selection.stamp)
        t2 = time.perf_counter()
        if not np.isfinite(actions).all():
            self.counters["nonfinite_chunks"] += 1
            self.get_logger().error("policy produced non-finite actions; chunk not published")
            return
        chunk = cv.ChunkArrays(
            stamp=selection.stamp,
            step_period=1.0 / self.spec.control_frequency,
            slot_indices=np.asarray(self.spec.action_slots),
            actions=actions,
            checkpoint_id=self.spec.checkpoint_id,
            inference_latency=t2 - t0,
            sequence=self._sequence,
        )
        added = float(self._param("added_delay"))
        while added > 0 and self._now() < selection.stamp + added and not self._stop.is_set():
            self._stop.wait(0.001)  # on the node's clock, so sim time works
        publisher = self._chunk_pub
        if publisher is None or self._stop.is_set():  # stopping: no chunk after the stop
            return
        publisher.publish(cv.chunk_to_msg(chunk, ActionChunk))
        t3 = time.perf_counter()
        latency = self._now() - selection.stamp
        self._latency_estimate = (latency if self._latency_estimate is None
                                  else 0.8 * self._latency_estimate + 0.2 * latency)  # fmt: skip
        self._last_chunk = (selection.stamp, chunk.step_period, actions)
        self._sequence += 1
        self.counters["chunks"] += 1
        self.stats.add(
            waiting=waiting, preprocessing=t1 - t0, inference=t2 - t1, publishing=t3 - t2,
            total=waiting + (t3 - t0),
        )  # fmt: skip

    def _predict(self, obs, stamp: float) -> np.ndarray:
        """The chunk for ``obs``; with ``strategy: rtc`` conditioned on the last chunk."""
        last = self._last_chunk
        if self._param("strategy") != "rtc" or last is None or self._latency_estimate is None:
            return self.policy.predict_chunk(obs)
        last_stamp, step, last_actions = last
        start = round((stamp - last_stamp) / step)  # the old chunk's row at this stamp
        delay = math.ceil(self._latency_estimate / step - 1e-6)
        prefix = last_actions[max(0, start):]
        if start < 0 or len(prefix) == 0 or self.policy.rtc_fallback(delay):
            self.counters["rtc_fallbacks"] += 1
            self.get_logger().warn(
                f"real-time chunking: delay {delay} steps (latency "
                f"{self._latency_estimate * 1e3:.0f} ms) and {len(prefix)} rows left of the last"
                f" chunk (horizon {self.spec.horizon}): sampling without a prefix",
                throttle_duration_sec=5.0,
            )
            return self.policy.predict_chunk(obs)
        self.counters["rtc_chunks"] += 1
        self._rtc_delay = delay
        # s, the steps each chunk runs before the next replaces it: this node's period.
        return self.policy.predict_chunk(obs, prefix=prefix, delay=delay,
                                         execution_horizon=max(1, start),
                                         guidance=self._param("rtc_guidance"))  # fmt: skip

    def _publish_diagnostics(self) -> None:
        if self._diag_pub is None:
            return
        summary = self.stats.summary()
        buffer_counters = self.buffer.counters if self.buffer is not None else {}
        dropped = (
            buffer_counters.get("out_of_order", 0)
            + buffer_counters.get("future", 0)
            + self.counters["image_rejected"]
            + self.counters["stale"]
        )
        values = {k: f"{v:.3f}" for k, v in summary.items()}
        values.update({k: str(v) for k, v in self.counters.items()})
        values["strategy"] = str(self._param("strategy"))
        values["inference_path"] = self.inference_path
        if self._image_delivery:
            delivery = 1e3 * np.asarray(self._image_delivery)
            values["image_delivery_mean_ms"] = f"{delivery.mean():.3f}"
            values["image_delivery_p95_ms"] = f"{np.percentile(delivery, 95):.3f}"
        values["rtc_delay_steps"] = str(self._rtc_delay)
        values.update({f"buffer_{k}": str(v) for k, v in buffer_counters.items()})
        values["dropped_observations"] = str(dropped)
        values["instruction"] = self.instruction
        values["last_image_problem"] = self.last_image_problem
        values["waiting_for"] = self.waiting_reason
        level, message = DiagnosticStatus.OK, "publishing chunks"
        if not summary:
            level, message = DiagnosticStatus.WARN, "no chunk yet"
        if self.waiting_reason:
            level, message = DiagnosticStatus.WARN, self.waiting_reason
        elif self.counters["policy_errors"] or self.counters["nonfinite_chunks"]:
            level, message = DiagnosticStatus.WARN, "inference errors"
        diag = DiagnosticArray()
        diag.header.stamp = self.get_clock().now().to_msg()
        diag.status = [
            DiagnosticStatus(
                level=level,
                name=f"{self.get_name()}: policy",
                message=message,
                hardware_id=self.spec.checkpoint_id if self.spec else "",
                values=[KeyValue(key=k, value=v) for k, v in values.items()],
            )
        ]
        self._diag_pub.publish(diag)


def _autostart(node: PolicyNode) -> bool:
    """With ``autostart``: configure (False when it failed; it logged why) and activate."""
    if not node.get_parameter("autostart").value:
        return True
    if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
        return False
    node.trigger_activate()
    return True


def main(args=None) -> int:
    # halt: the inference worker stops (and publishes nothing more) before the context goes.
    return run_node(
        PolicyNode, "policy_node", args, start=_autostart,
        halt=lambda node: node._stop_worker(timeout=0.5), close=lambda node: node._release(),
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())

"""pytest fixtures to replay a bag through real nodes over DDS.

Use from any package's tests by importing the fixtures into a conftest.py::

    from action_diffusion_policy.testing.bag_fixture import bag_replay, sample_bag  # noqa: F401

then::

    @pytest.mark.ros
    def test_my_node(bag_replay, sample_bag):
        ...start your node / subscriptions...
        replay = bag_replay(sample_bag, rate=2.0, topics=["/follower_left/joint_states"])
        replay.wait(timeout=30)          # every message published with its original timing
        assert replay.published == ...

The player runs in its own rclpy context and executor thread, so the test's own ``rclpy.init``
and nodes are untouched; it publishes ``/clock`` (the bag's time) unless ``clock=False``.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

SAMPLE_BAG_NAME = "aloha_sim_transfer_cube"


def test_data_dir() -> Path:
    """``src/action_diffusion_policy/test/data`` (``ACTION_DIFFUSION_TEST_DATA`` overrides)."""
    env = os.environ.get("ACTION_DIFFUSION_TEST_DATA")
    if env:
        return Path(env)
    for parent in Path(__file__).resolve().parents:
        d = parent / "test" / "data"
        if (parent / "action_diffusion_policy").is_dir() and d.is_dir():
            return d
        d = parent / "src" / "action_diffusion_policy" / "test" / "data"
        if d.is_dir():
            return d
    raise FileNotFoundError(
        "action_diffusion_policy/test/data not found; set ACTION_DIFFUSION_TEST_DATA"
    )


def sample_bag_path() -> Path:
    """The committed few-second MCAP bag of the simulated transfer-cube task."""
    return test_data_dir() / SAMPLE_BAG_NAME


class Replay:
    """One running bag player (its node, executor thread and context)."""

    def __init__(self, bag, rate=1.0, topics=None, loop=False, clock=True, start_delay=0.5):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.parameter import Parameter

        from action_diffusion_policy.nodes.bag_player import BagPlayerNode

        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        params = [
            Parameter("bag", value=str(bag)),
            Parameter("rate", value=float(rate)),
            Parameter("loop", value=bool(loop)),
            Parameter("clock", value=bool(clock)),
            Parameter("start_delay", value=float(start_delay)),
        ]
        if topics:
            params.append(Parameter("topics", value=list(topics)))
        self.node = BagPlayerNode(context=self.context, parameter_overrides=params)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._spin = threading.Thread(target=self._run, daemon=True)
        self._spin.start()

    def _run(self) -> None:
        import contextlib

        with contextlib.suppress(Exception):  # the context is shut down by close()
            self.executor.spin()

    @property
    def published(self) -> int:
        return self.node.published

    @property
    def total(self) -> int:
        """Messages of the selected topics in the bag (per pass)."""
        return self.node.total

    def wait(self, timeout: float = 60.0) -> None:
        if not self.node.finished.wait(timeout):
            raise TimeoutError(
                f"bag replay of {self.node.bag} not finished after {timeout} s "
                f"({self.published}/{self.total} messages)"
            )

    def close(self) -> None:
        import rclpy

        self.node.stop()
        self.executor.shutdown(timeout_sec=2)
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)
        self._spin.join(timeout=5)


@pytest.fixture
def sample_bag() -> Path:
    path = sample_bag_path()
    assert (path / "metadata.yaml").is_file(), f"{path} is missing: the committed test bag"
    return path


@pytest.fixture
def bag_replay():
    """Factory: ``bag_replay(bag, rate=1.0, topics=None, loop=False, clock=True)`` -> Replay."""
    started: list[Replay] = []

    def start(bag, **kwargs) -> Replay:
        replay = Replay(bag, **kwargs)
        started.append(replay)
        return replay

    yield start
    for replay in started:
        replay.close()

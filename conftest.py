"""Workspace-wide pytest set-up: keep every test's DDS traffic on this machine and private."""

import os
import random

# Each pytest process gets its own DDS domain, so parallel runs (CI, a developer's shell)
# never see each other's nodes. Set before rclpy is imported by any test module.
os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid()).randint(1, 100)))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("MUJOCO_GL", "egl")

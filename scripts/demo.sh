#!/usr/bin/env bash
# `make demo`: transfer-cube in the simulated ALOHA, closed loop through the ROS nodes.
# Prints what drives the arms (learned policy or, until a checkpoint ships, the scripted
# expert), the success rate over DEMO_EPISODES episodes (default 5), and writes a video of
# episode 1 to artifacts/demo_transfer_cube.mp4. Expects `source scripts/env.sh` (make does it).
# Options: DEMO_EPISODES=N DEMO_SEED=S DEMO_CHECKPOINT=DIR|none, or the flags of
# `python -m action_diffusion_bringup.demo --help`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# A private DDS domain on this machine, so a demo never talks to another session's nodes.
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$((RANDOM % 100 + 1))}"
export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
export MUJOCO_GL="${MUJOCO_GL:-egl}"
exec python -m action_diffusion_bringup.demo "$@"

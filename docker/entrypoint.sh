#!/bin/bash
# Source ROS 2 and the workspace, then run the command (default: the sim bringup).
set -e
# shellcheck disable=SC1091
source "/opt/ros/${ROS_DISTRO:-jazzy}/setup.bash"
# shellcheck disable=SC1091
source /ws/install/setup.bash
exec "$@"

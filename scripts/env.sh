# Source this to use the built workspace: `source scripts/env.sh`.
# Activates .venv, points ament at the venv-installed ROS 2 (unless a system ROS 2 is sourced)
# and overlays install/ (local_setup.bash: setup.bash would chain to underlays the venv lacks).
_ad_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC1091
source "$_ad_root/.venv/bin/activate"
if [ -z "${ROS_DISTRO:-}" ] || [ "${AD_ROS_FROM_VENV:-0}" = 1 ]; then
  export AD_ROS_FROM_VENV=1
  export AMENT_PREFIX_PATH="$_ad_root/.venv${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
  export CMAKE_PREFIX_PATH="$_ad_root/.venv${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
  export RMW_IMPLEMENTATION="${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}"
fi
# shellcheck disable=SC1091
[ -f "$_ad_root/install/local_setup.bash" ] && source "$_ad_root/install/local_setup.bash"
export MUJOCO_GL="${MUJOCO_GL:-egl}"
unset _ad_root

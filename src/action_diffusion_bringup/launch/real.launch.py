"""A real dual-arm robot (drivers and cameras already running): unified state + policy +
action executor, optional recorder.

  ros2 launch action_diffusion_bringup real.launch.py robot:=piper checkpoint:=DIR

The nodes, their parameters and the arguments come from action_diffusion_bringup.description
(through launch_helper), which the launch-free runner (python -m action_diffusion_bringup.run
real) reads too.
"""

from action_diffusion_bringup.launch_helper import bringup_launch_description

BRINGUP = "real"


def generate_launch_description():
    return bringup_launch_description(BRINGUP)

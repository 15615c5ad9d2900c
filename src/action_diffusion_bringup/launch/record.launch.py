"""A real robot driven by a teleoperator: unified state + recorder, for demonstrations.

  ros2 launch action_diffusion_bringup record.launch.py robot:=aloha task:=transfer_cube

The nodes, their parameters and the arguments come from action_diffusion_bringup.description
(through launch_helper), which the launch-free runner (python -m action_diffusion_bringup.run
record) reads too.
"""

from action_diffusion_bringup.launch_helper import bringup_launch_description

BRINGUP = "record"


def generate_launch_description():
    return bringup_launch_description(BRINGUP)

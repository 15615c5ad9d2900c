"""Simulated ALOHA + unified state + policy + action executor (or the scripted expert),
optional recorder.

  ros2 launch action_diffusion_bringup sim.launch.py checkpoint:=DIR
  ros2 launch action_diffusion_bringup sim.launch.py policy:=false expert:=true

The nodes, their parameters and the arguments come from action_diffusion_bringup.description
(through launch_helper), which the launch-free runner (python -m action_diffusion_bringup.run
sim) reads too.
"""

from action_diffusion_bringup.launch_helper import bringup_launch_description

BRINGUP = "sim"


def generate_launch_description():
    return bringup_launch_description(BRINGUP)

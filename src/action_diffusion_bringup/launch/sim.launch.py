"""Simulated ALOHA + unified state + policy + action executor (or the scripted expert),
optional recorder.

  ros2 launch action_diffusion_bringup sim.launch.py checkpoint:=DIR
  ros2 launch action_diffusion_bringup sim.launch.py policy:=false expert:=true

The nodes, their parameters and the arguments come from action_diffusion_bringup.description,
which the launch-free runner (python -m action_diffusion_bringup.run sim) reads too.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from action_diffusion_bringup import description

BRINGUP = "sim"


def _nodes(context, *_args, **_kwargs):
    given = {
        arg.name: LaunchConfiguration(arg.name).perform(context)
        for arg in description.arguments(BRINGUP)
    }
    return [
        Node(**description.launch_node_kwargs(spec))
        for spec in description.describe(BRINGUP, given)
    ]


def generate_launch_description():
    declared = [
        DeclareLaunchArgument(
            arg.name,
            default_value=arg.default,
            description=arg.description,
            **({"choices": list(arg.choices)} if arg.choices else {}),
        )
        for arg in description.arguments(BRINGUP)
    ]
    return LaunchDescription([*declared, OpaqueFunction(function=_nodes)])

"""A real robot driven by a teleoperator: unified state + recorder, for demonstrations.

  ros2 launch action_diffusion_bringup record.launch.py robot:=aloha task:=transfer_cube

The nodes, their parameters and the arguments come from action_diffusion_bringup.description,
which the launch-free runner (python -m action_diffusion_bringup.run record) reads too.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from action_diffusion_bringup import description

BRINGUP = "record"


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

"""What every launch file in `launch/` returns: the bringup's arguments and nodes, from the
shared description.

    # launch/sim.launch.py
    from action_diffusion_bringup.launch_helper import bringup_launch_description

    def generate_launch_description():
        return bringup_launch_description("sim")

Each argument of `description.arguments(bringup)` becomes a DeclareLaunchArgument (default,
description, choices); the nodes are built when launch resolves the arguments (an
OpaqueFunction), each a launch_ros Node from `description.launch_node_kwargs(spec)`: the same
nodes, parameters and remappings the launch-free runner (`run.py`) starts. A bringup that
cannot work (a missing checkpoint, an unknown robot) raises BringupError before any node starts.
The nodes get `description.dds_environment` (Fast DDS shared memory sized for camera frames),
as in the runner, unless the user set up Fast DDS themselves.

`launch` and `launch_ros` are imported when a launch file asks for its description, so this
module imports without them.
"""

from __future__ import annotations

from action_diffusion_bringup import description


def bringup_launch_description(bringup: str):
    """The LaunchDescription of `bringup`: its declared arguments, then its nodes."""
    import os

    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node

    def nodes(context, *_args, **_kwargs):
        given = {
            arg.name: LaunchConfiguration(arg.name).perform(context)
            for arg in description.arguments(bringup)
        }
        return [
            Node(**description.launch_node_kwargs(spec))
            for spec in description.describe(bringup, given)
        ]

    declared = [
        DeclareLaunchArgument(
            arg.name,
            default_value=arg.default,
            description=arg.description,
            **({"choices": list(arg.choices)} if arg.choices else {}),
        )
        for arg in description.arguments(bringup)
    ]
    dds = [SetEnvironmentVariable(k, v) for k, v in description.dds_environment(os.environ).items()]
    return LaunchDescription([*declared, *dds, OpaqueFunction(function=nodes)])

"""Every arm's JointState topics, subscribed the same way by each node that builds a state
(unified_state_node, policy_node, action_executor)."""

from __future__ import annotations

from collections.abc import Callable

from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import JointState


def subscribe_joint_states(node: Node, embodiment, callback: Callable) -> list:
    """One subscription per arm and JointState topic (``ArmConfig.joint_state_topics``: an arm
    may merge several), sensor-data QoS; ``callback(arm_name, msg, topic)``. Returns them."""
    return [
        node.create_subscription(
            JointState,
            topic,
            lambda msg, arm=arm.name, topic=topic: callback(arm, msg, topic),
            qos_profile_sensor_data,
        )
        for arm in embodiment.arms
        for topic in arm.joint_state_topics
    ]

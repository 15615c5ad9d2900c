"""ROS 2 nodes of unified_action_space: the only modules here that import rclpy."""

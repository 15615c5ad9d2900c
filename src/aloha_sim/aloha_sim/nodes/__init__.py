"""ROS 2 nodes of the simulated ALOHA (the only modules of aloha_sim that import rclpy)."""

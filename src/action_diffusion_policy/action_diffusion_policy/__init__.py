"""Diffusion and flow-matching action-chunk policies, training, datasets and bag tools, plus
the policy node, the chunk executor and the recorder (only ``nodes/`` imports rclpy)."""

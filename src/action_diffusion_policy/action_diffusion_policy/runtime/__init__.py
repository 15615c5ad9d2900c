"""Deployment-time pieces without ROS: chunk ensembling, command limiting, observation assembly.

The nodes in ``action_diffusion_policy.nodes`` are thin adapters over these classes.
"""

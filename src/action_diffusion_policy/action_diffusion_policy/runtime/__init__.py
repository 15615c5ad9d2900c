"""Deployment-time pieces without ROS: chunk ensembling, command limiting, observation assembly.

The nodes in ``action_diffusion_policy.nodes`` are thin adapters over these classes.
"""

# The topic the action executor takes chunks from; bringup remaps the policy node's
# ``~/action_chunk`` onto it (docs/ARCHITECTURE.md, Runtime). Defined here only.
CHUNK_TOPIC = "/policy/action_chunk"

"""Launch files and configuration that bring up the action-diffusion suite for the simulated
ALOHA and for real dual-arm robots, plus a launch-free runner of the same description."""

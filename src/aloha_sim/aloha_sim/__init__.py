"""A simulated ALOHA (two ViperX 300 arms) in MuJoCo: transfer-cube and insertion tasks,
a scripted bimanual expert, and ROS 2 nodes that behave like the real robot."""

"""A simulated ALOHA (two ViperX 300 arms) in MuJoCo with transfer-cube and insertion tasks and a scripted bimanual expert, as ROS 2 nodes that behave like the real robot."""

"""The bringup's Fast DDS profile: camera frames between processes by shared memory."""

import os
import random
import subprocess
import sys
import textwrap

from action_diffusion_bringup import description

RECEIVER = textwrap.dedent("""
    import sys, time
    import rclpy
    from rclpy.node import Node
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image
    rclpy.init()
    node = Node("frame_receiver")
    got = []
    node.create_subscription(Image, "/dds_test/image", lambda m: got.append(len(m.data)),
                             qos_profile_sensor_data)
    print("ready", flush=True)
    end = time.monotonic() + float(sys.argv[1])
    while time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.05)
    print("received", len(got), min(got) if got else 0, flush=True)
""")
SENDER = textwrap.dedent("""
    import time
    import numpy as np
    import rclpy
    from rclpy.node import Node
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image
    rclpy.init()
    node = Node("frame_sender")
    pub = node.create_publisher(Image, "/dds_test/image", qos_profile_sensor_data)
    while pub.get_subscription_count() == 0:
        time.sleep(0.05)
    time.sleep(0.5)
    msg = Image(height=480, width=640, encoding="rgb8", step=640 * 3)
    msg.data = np.random.default_rng(0).integers(0, 255, 480 * 640 * 3, dtype=np.uint8).tobytes()
    for _ in range(60):
        pub.publish(msg)
        time.sleep(1 / 30)
    print("sent 60", flush=True)
""")


def test_profile_is_used_unless_the_user_set_up_dds():
    env = description.dds_environment({}, description.config_dir())
    assert set(env) == {"FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_DEFAULT_PROFILES_FILE"}
    assert os.path.isfile(env["FASTRTPS_DEFAULT_PROFILES_FILE"])
    for var in description.DDS_ENV_VARS:
        assert description.dds_environment({var: "mine.xml"}) == {}
    assert description.dds_environment({"RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp"}) == {}


def test_camera_frames_cross_processes_with_the_profile():
    """640x480 rgb8 (900 KiB) frames with best-effort sensor QoS, as a camera driver sends
    them: with the profile they go by shared memory and arrive."""
    env = {**os.environ, "ROS_DOMAIN_ID": str(random.randint(101, 200)),
           "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
           **description.dds_environment({}, description.config_dir())}
    receiver = subprocess.Popen([sys.executable, "-c", RECEIVER, "8"], env=env,
                                stdout=subprocess.PIPE, text=True)
    assert receiver.stdout.readline().strip() == "ready"
    sender = subprocess.run([sys.executable, "-c", SENDER], env=env, capture_output=True,
                            text=True, timeout=60)
    assert "sent 60" in sender.stdout, sender.stderr[-2000:]
    out, _ = receiver.communicate(timeout=30)
    _, count, size = out.split()
    assert int(size) == 480 * 640 * 3 and int(count) >= 50, out

"""One image pipeline: a frame recorded in a bag and the same frame arriving live give the same
policy input tensor (build_dataset's decoder, the policy node's decoder, the policy's crop and
normalisation), for raw and JPEG frames; and live frames of another shape are refused."""

import numpy as np
import pytest
import torch
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import CompressedImage, Image

from action_diffusion_policy.config import PolicyConfig
from action_diffusion_policy.data import bags
from action_diffusion_policy.data.images import FrameDecoder
from action_diffusion_policy.policy import ActionChunkPolicy
from action_diffusion_policy.runtime import conversions as cv
from action_diffusion_policy.testing.bag_fixture import sample_bag_path

TOPIC = "/cameras/cam_high/image_raw"
SIZE = (96, 128)
SLOTS = [0, 1, 2, 10]


def recorded_frame():
    """The first cam_high message of the committed bag: as rosbags reads it and as raw CDR."""
    bag = sample_bag_path()
    with bags.open_bag(bag) as reader:
        conn = next(c for c in reader.connections if c.topic == TOPIC)
        _, _, raw = next(reader.messages(connections=[conn]))
        return reader.deserialize(raw, conn.msgtype), bytes(raw), conn.msgtype


def policy_input(frame: np.ndarray) -> torch.Tensor:
    cfg = PolicyConfig(backbone="dit", size="tiny", head="flow", sampler="euler", horizon=8,
                       n_obs_steps=1, camera_names=["cam_high"], image_size=SIZE,
                       state_slots=SLOTS, action_slots=SLOTS, vision_encoder="convnet",
                       conv_channels=(16, 32), crop_ratio=0.9)
    policy = ActionChunkPolicy(cfg).eval()
    images = torch.from_numpy(frame[None, None, None]).permute(0, 1, 2, 5, 3, 4)
    return policy._crop(policy._images_to_float(images).reshape(1, 3, *SIZE))


def test_raw_frame_from_a_bag_and_live_give_the_same_tensor():
    recorded, raw, msgtype = recorded_frame()
    live = deserialize_message(raw, Image)  # what rclpy hands the policy node's callback
    from_bag = FrameDecoder(msgtype, SIZE)(recorded)  # build_dataset's path
    from_live = cv.CameraFrameDecoder("cam_high", SIZE)(live)  # policy_node's path
    assert from_bag.shape == (*SIZE, 3) and from_bag.std() > 5
    np.testing.assert_array_equal(from_bag, from_live)
    assert torch.equal(policy_input(from_bag), policy_input(from_live))


def test_jpeg_frame_from_a_bag_and_live_give_the_same_tensor():
    recorded, _, _ = recorded_frame()
    full = FrameDecoder("sensor_msgs/msg/Image", None)(recorded)
    big = np.ascontiguousarray(np.kron(full, np.ones((2, 2, 1), np.uint8)))  # 480x640 "camera"
    msg = CompressedImage(format="jpeg", data=cv.rgb_to_compressed_msg(
        big, CompressedImage, fmt="jpg").data)
    live = deserialize_message(serialize_message(msg), CompressedImage)
    bag_decoder = FrameDecoder("sensor_msgs/msg/CompressedImage", SIZE)
    live_decoder = cv.CameraFrameDecoder("cam_high", SIZE)
    for _ in range(2):  # the second frame uses the DCT-scaled decode on both paths
        np.testing.assert_array_equal(bag_decoder(msg), live_decoder(live))


def test_a_live_frame_of_another_aspect_ratio_is_refused_naming_the_camera():
    msg = cv.rgb_to_image_msg(np.zeros((480, 480, 3), np.uint8), Image)
    with pytest.raises(cv.ImageError, match=r"cam_high: 480x480 .*aspect ratio.*128x96"):
        cv.CameraFrameDecoder("cam_high", SIZE)(msg)
    # The same aspect ratio at another size is the normal case: resized like the dataset.
    ok = cv.CameraFrameDecoder("cam_high", SIZE)(
        cv.rgb_to_image_msg(np.zeros((480, 640, 3), np.uint8), Image))
    assert ok.shape == (*SIZE, 3)


def test_an_unsupported_encoding_is_refused_naming_the_encoding():
    msg = Image(encoding="16UC1", height=4, width=4, step=8, data=bytes(32))
    with pytest.raises(cv.ImageError, match="16UC1"):
        cv.CameraFrameDecoder("cam_high", SIZE)(msg)

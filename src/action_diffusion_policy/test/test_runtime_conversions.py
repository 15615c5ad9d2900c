"""Round trips of the runtime's message <-> array conversions (real message classes, no rclpy)."""

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from sensor_msgs.msg import CompressedImage, Image, JointState

from action_diffusion_msgs.msg import ActionChunk
from action_diffusion_policy.runtime import command_outputs as co
from action_diffusion_policy.runtime import conversions as cv
from unified_action_space.conversions import (
    joint_state_from_msg,
    unified_state_from_msg,
    unified_state_to_msg,
)
from unified_action_space.embodiment import COMMAND_TYPES, CommandOutput


@pytest.mark.parametrize("seconds", [0.0, 1.5, 1234.000000001, 0.9999999999])
def test_stamp_round_trip(seconds):
    t = Time()
    cv.set_stamp(t, seconds)
    assert 0 <= t.nanosec < 1_000_000_000
    assert cv.stamp_to_seconds(t) == pytest.approx(seconds, abs=1e-9)


def rgb(h=5, w=7):
    return np.random.default_rng(0).integers(0, 255, size=(h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8"])
def test_image_round_trip(encoding):
    image = rgb()
    msg = cv.rgb_to_image_msg(image, Image, stamp_s=3.25, encoding=encoding)
    assert cv.stamp_to_seconds(msg.header.stamp) == 3.25
    np.testing.assert_array_equal(cv.image_msg_to_rgb(msg), image)


def test_rgba_bgra_mono_decode_to_rgb():
    image = rgb()
    rgba = np.concatenate([image, np.full((*image.shape[:2], 1), 9, np.uint8)], axis=2)
    for enc, data in (("rgba8", rgba), ("bgra8", rgba[..., [2, 1, 0, 3]])):
        msg = Image(height=5, width=7, encoding=enc, step=28, data=data.tobytes())
        np.testing.assert_array_equal(cv.image_msg_to_rgb(msg), image)
    mono = image[..., 0].copy()
    msg = Image(height=5, width=7, encoding="mono8", step=7, data=mono.tobytes())
    np.testing.assert_array_equal(cv.image_msg_to_rgb(msg), np.repeat(mono[..., None], 3, 2))


def test_compressed_png_round_trip():
    image = rgb()
    msg = cv.rgb_to_compressed_msg(image, CompressedImage, stamp_s=1.0)
    np.testing.assert_array_equal(cv.image_msg_to_rgb(msg), image)


def test_bad_images_rejected_with_reason():
    msg = Image(height=2, width=2, encoding="16UC1", step=4, data=bytes(8))
    with pytest.raises(cv.ImageError, match="16UC1"):
        cv.image_msg_to_rgb(msg)
    msg = Image(height=2, width=2, encoding="rgb8", step=6, data=bytes(5))
    with pytest.raises(cv.ImageError, match="bytes"):
        cv.check_image_msg(msg)
    with pytest.raises(cv.ImageError, match="no data"):
        cv.image_msg_to_rgb(CompressedImage(format="jpeg"))


def test_resize_only_when_needed():
    image = rgb(480, 640)
    assert cv.resize_rgb(image, (480, 640)) is image
    small = cv.resize_rgb(np.full((480, 640, 3), 77, np.uint8), (96, 128))
    assert small.shape == (96, 128, 3) and (small == 77).all()


def test_action_chunk_round_trip():
    actions = np.arange(12, dtype=np.float32).reshape(4, 3) / 7
    chunk = cv.ChunkArrays(2.5, 0.02, np.array([0, 10, 50]), actions, "abc", 0.07, 9)
    back = cv.chunk_from_msg(cv.chunk_to_msg(chunk, ActionChunk))
    assert back.stamp == 2.5 and back.step_period == 0.02 and back.sequence == 9
    assert back.checkpoint_id == "abc" and back.inference_latency == 0.07
    assert back.slot_indices.tolist() == [0, 10, 50]
    np.testing.assert_array_equal(back.actions, actions)


def test_malformed_chunk_message_is_an_error():
    msg = ActionChunk(horizon=3, slot_indices=[0, 1], actions=[0.0] * 5, step_period=0.1)
    with pytest.raises(ValueError, match="horizon 3"):
        cv.chunk_from_msg(msg)


def test_unified_state_and_joint_state_round_trip():
    values = np.linspace(-1, 1, 128).astype(np.float32)
    mask = np.arange(128) % 3 == 0
    msg = unified_state_to_msg(values, mask, "aloha", 50.0, stamp_ns=4_000_000_000)
    state = unified_state_from_msg(msg)
    stamp, v, m = state.stamp, state.values, state.mask
    assert stamp == 4.0 and v.dtype == np.float32 and m.dtype == bool
    np.testing.assert_array_equal(v, values)
    np.testing.assert_array_equal(m, mask)
    js = JointState(name=["a", "b"], position=[0.1, 0.2], velocity=[0.0, 1.0])
    cv.set_stamp(js.header.stamp, 1.25)
    js_arrays = joint_state_from_msg(js)
    assert (js_arrays.stamp, js_arrays.names) == (1.25, ["a", "b"])


@pytest.mark.parametrize("command_type", COMMAND_TYPES)
def test_command_round_trip(command_type):
    values = np.array([0.1, -0.2, 0.03])
    output = CommandOutput(topic="/x", type=command_type, joints=("a", "b", "c"))
    plan = co.OutputPlan("right", output, np.arange(3), co.interface_class(command_type))
    msg = plan.message(values, stamp_s=1.0, dt=0.02)
    assert isinstance(msg, co.interface_class(command_type))
    np.testing.assert_array_equal(cv.command_from_msg(msg), values)
    with pytest.raises(ValueError, match="non-finite"):
        plan.message([np.nan, 0, 0], 1.0, 0.02)


def test_row_padding_is_skipped():
    image = rgb()
    padded = np.concatenate([image.reshape(5, 21), np.full((5, 3), 255, np.uint8)], axis=1)
    msg = Image(height=5, width=7, encoding="rgb8", step=24, data=padded.tobytes())
    np.testing.assert_array_equal(cv.image_msg_to_rgb(msg), image)

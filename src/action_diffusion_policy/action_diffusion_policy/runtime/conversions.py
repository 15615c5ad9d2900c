"""Image, ActionChunk and command message <-> array conversions of the runtime nodes.

Stamps, JointState and UnifiedState are converted in ``unified_action_space.conversions`` (the
one module for those messages); ``stamp_to_seconds`` and ``set_stamp`` are imported from there.
Imports message classes only (no rclpy), so it is tested with plain pytest. Images are decoded
by ``data.images``, the dataset builder's decoder.
"""

from __future__ import annotations

import array
from dataclasses import dataclass

import cv2
import numpy as np

from action_diffusion_policy.data import images
from unified_action_space.conversions import set_stamp, stamp_to_seconds

# 8-bit colour encodings a frame may arrive in (16-bit depth images are not camera frames here).
SUPPORTED_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8")


class ImageError(ValueError):
    """An image message that cannot be turned into an RGB frame."""


# --- images ----------------------------------------------------------------------------------
def check_image_msg(msg) -> None:
    """Cheap check for the subscription callback: raises ImageError on an unusable message."""
    if hasattr(msg, "format"):  # CompressedImage
        if not msg.data:
            raise ImageError("compressed image has no data")
        return
    if msg.encoding not in SUPPORTED_ENCODINGS:
        raise ImageError(
            f"image encoding {msg.encoding!r} is not supported; publish one of "
            f"{SUPPORTED_ENCODINGS}"
        )
    channels = 1 if msg.encoding == "mono8" else (4 if msg.encoding.endswith("a8") else 3)
    if msg.height == 0 or msg.width == 0 or msg.step < msg.width * channels:
        raise ImageError(f"image {msg.width}x{msg.height} step {msg.step} is malformed")
    if len(msg.data) < msg.step * msg.height:
        raise ImageError(f"image data has {len(msg.data)} bytes, expected {msg.step * msg.height}")


def image_msg_to_rgb(msg) -> np.ndarray:
    """sensor_msgs/Image or CompressedImage -> (H, W, 3) uint8 RGB, by the dataset builder's
    decoder (``data.images``); raises ImageError."""
    check_image_msg(msg)
    msgtype = "sensor_msgs/msg/CompressedImage" if hasattr(msg, "format") else (
        "sensor_msgs/msg/Image")
    try:
        return images.decode(msg, msgtype, None)
    except images.ImageDecodeError as exc:
        raise ImageError(str(exc)) from exc


def resize_rgb(image: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """Resize to (H, W) when it differs: the dataset builder's own resize."""
    return image if size is None else images.resize(image, size)


# A frame whose aspect ratio differs from the checkpoint's by more than this is refused: it
# would be squashed, and the policy would see the scene at other proportions than in training.
MAX_ASPECT_MISMATCH = 0.05


class CameraFrameDecoder:
    """One camera's live frames -> the checkpoint's (H, W, 3) uint8 input.

    The same ``data.images.FrameDecoder`` that ``build_dataset`` runs on recorded frames (the
    same decode, JPEG DCT scaling and resize), so a frame gives the same pixels live as in the
    training data. Raises ImageError naming the camera for an unusable message.
    """

    def __init__(self, camera: str, size: tuple[int, int] | None):
        self.camera = camera
        self.size = None if size is None else (int(size[0]), int(size[1]))
        self._decoders: dict[bool, images.FrameDecoder] = {}

    def check(self, msg) -> None:
        """The subscription callback's cheap check (no decode): raises ImageError."""
        check_image_msg(msg)
        if not hasattr(msg, "format") and self.size is not None:
            h, w = self.size
            ratio = (msg.width / msg.height) / (w / h)
            if abs(ratio - 1.0) > MAX_ASPECT_MISMATCH:
                raise ImageError(
                    f"{self.camera}: {msg.width}x{msg.height} images have another aspect ratio "
                    f"than the checkpoint's {w}x{h}; crop them to {w}:{h} (e.g. with "
                    "image_proc) or retrain on this camera")

    def __call__(self, msg) -> np.ndarray:
        self.check(msg)
        compressed = hasattr(msg, "format")
        decoder = self._decoders.get(compressed)
        if decoder is None:
            msgtype = ("sensor_msgs/msg/CompressedImage" if compressed
                       else "sensor_msgs/msg/Image")
            decoder = self._decoders[compressed] = images.FrameDecoder(msgtype, self.size)
        try:
            return decoder(msg)
        except images.ImageDecodeError as exc:
            raise ImageError(f"{self.camera}: {exc}") from exc


def rgb_to_image_msg(image: np.ndarray, msg_cls, stamp_s: float | None = None, encoding="rgb8"):
    """(H, W, 3) uint8 RGB -> sensor_msgs/Image (rgb8 or bgr8)."""
    if encoding == "bgr8":
        image = image[..., ::-1]
    msg = msg_cls()
    msg.height, msg.width = int(image.shape[0]), int(image.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = msg.width * 3
    msg.data = np.ascontiguousarray(image, dtype=np.uint8).tobytes()
    if stamp_s is not None:
        set_stamp(msg.header.stamp, stamp_s)
    return msg


def rgb_to_compressed_msg(image: np.ndarray, msg_cls, stamp_s: float | None = None, fmt="png"):
    """(H, W, 3) uint8 RGB -> sensor_msgs/CompressedImage (png lossless, or jpeg)."""
    ok, buf = cv2.imencode(f".{fmt}", np.ascontiguousarray(image[..., ::-1]))
    if not ok:
        raise ImageError(f"cv2 could not encode {fmt}")
    msg = msg_cls()
    msg.format = fmt
    msg.data = buf.tobytes()
    if stamp_s is not None:
        set_stamp(msg.header.stamp, stamp_s)
    return msg


# --- action chunks ---------------------------------------------------------------------------
@dataclass
class ChunkArrays:
    stamp: float
    step_period: float
    slot_indices: np.ndarray  # (k,) int64
    actions: np.ndarray  # (H, k) float32
    checkpoint_id: str = ""
    inference_latency: float = 0.0
    sequence: int = 0


def chunk_to_msg(chunk: ChunkArrays, msg_cls):
    """ChunkArrays -> action_diffusion_msgs/ActionChunk."""
    actions = np.ascontiguousarray(chunk.actions, dtype=np.float32)
    if actions.ndim != 2 or actions.shape[1] != len(chunk.slot_indices):
        raise ValueError(
            f"chunk actions shape {actions.shape} does not match {len(chunk.slot_indices)} slots"
        )
    msg = msg_cls()
    set_stamp(msg.header.stamp, chunk.stamp)
    msg.step_period = float(chunk.step_period)
    msg.horizon = int(actions.shape[0])
    msg.slot_indices = array.array("H", np.asarray(chunk.slot_indices, dtype=np.uint16).tobytes())
    flat = array.array("f")
    flat.frombytes(actions.tobytes())
    msg.actions = flat
    msg.checkpoint_id = chunk.checkpoint_id
    msg.inference_latency = float(chunk.inference_latency)
    msg.sequence = int(chunk.sequence)
    return msg


def chunk_from_msg(msg) -> ChunkArrays:
    """action_diffusion_msgs/ActionChunk -> ChunkArrays; ValueError when sizes disagree."""
    slots = np.frombuffer(msg.slot_indices, dtype=np.uint16).astype(np.int64)
    flat = np.frombuffer(msg.actions, dtype=np.float32)
    if msg.horizon < 1 or slots.size < 1 or flat.size != msg.horizon * slots.size:
        raise ValueError(
            f"ActionChunk has horizon {msg.horizon}, {slots.size} slots and {flat.size} actions;"
            " need horizon * slots == actions and both >= 1"
        )
    return ChunkArrays(
        stamp=stamp_to_seconds(msg.header.stamp),
        step_period=msg.step_period,
        slot_indices=slots,
        actions=flat.reshape(msg.horizon, slots.size),
        checkpoint_id=msg.checkpoint_id,
        inference_latency=msg.inference_latency,
        sequence=msg.sequence,
    )


# --- commands --------------------------------------------------------------------------------
def command_from_msg(msg) -> np.ndarray:
    """The commanded values of a Float64MultiArray, JointState or JointTrajectory command
    (``command_outputs.OutputPlan.message``'s; its last point for a trajectory)."""
    if hasattr(msg, "points"):
        return np.asarray(msg.points[-1].positions, dtype=np.float64)
    if hasattr(msg, "position"):
        return np.asarray(msg.position, dtype=np.float64)
    return np.asarray(msg.data, dtype=np.float64)

"""sensor_msgs Image / CompressedImage contents -> RGB uint8 arrays, and resizing.

Works on any object with the messages' field names (rosbags' deserialized messages or rclpy's).
"""

from __future__ import annotations

import cv2
import numpy as np

_CHANNELS = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1, "8uc1": 1, "8uc3": 3}


class ImageDecodeError(ValueError):
    """An image message cannot be turned into an RGB frame."""


def image_to_rgb(msg) -> np.ndarray:
    """Raw ``sensor_msgs/Image`` -> (H, W, 3) uint8 RGB."""
    enc = str(msg.encoding).lower()
    if enc not in _CHANNELS:
        raise ImageDecodeError(
            f"image encoding {msg.encoding!r} is not supported; use one of {sorted(_CHANNELS)}"
        )
    c, h, w = _CHANNELS[enc], int(msg.height), int(msg.width)
    step = int(msg.step) or w * c
    buf = np.frombuffer(memoryview(msg.data), dtype=np.uint8) if not isinstance(
        msg.data, np.ndarray
    ) else msg.data.view(np.uint8)
    if buf.size < step * h or step < w * c:
        raise ImageDecodeError(
            f"image {w}x{h} {enc} needs {w * c * h} bytes (step {step}), message has {buf.size}"
        )
    img = buf[: step * h].reshape(h, step)[:, : w * c].reshape(h, w, c)
    if enc == "rgb8":
        return img
    if enc in ("bgr8", "8uc3"):
        return np.ascontiguousarray(img[..., ::-1])
    if enc == "bgra8":
        return np.ascontiguousarray(img[..., 2::-1])
    if enc == "rgba8":
        return np.ascontiguousarray(img[..., :3])
    return np.repeat(img, 3, axis=2)


def compressed_to_rgb(msg) -> np.ndarray:
    """``sensor_msgs/CompressedImage`` (jpeg/png) -> (H, W, 3) uint8 RGB."""
    data = np.frombuffer(memoryview(msg.data), dtype=np.uint8) if not isinstance(
        msg.data, np.ndarray
    ) else msg.data.view(np.uint8)
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if bgr is None:
        raise ImageDecodeError(f"compressed image (format {msg.format!r}) does not decode")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def rgb_to_compressed_bytes(rgb: np.ndarray, quality: int = 90) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ImageDecodeError("JPEG encoding failed")
    return buf.tobytes()


def resize(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize to (H, W); area interpolation when shrinking (no aliasing), linear otherwise."""
    h, w = size
    if rgb.shape[:2] == (h, w):
        return rgb
    shrink = rgb.shape[0] >= h and rgb.shape[1] >= w
    return cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def decode(msg, msgtype: str, size: tuple[int, int] | None) -> np.ndarray:
    rgb = compressed_to_rgb(msg) if msgtype.endswith("CompressedImage") else image_to_rgb(msg)
    return resize(rgb, size) if size is not None else rgb


_REDUCED = ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4),
            (2, cv2.IMREAD_REDUCED_COLOR_2))


class FrameDecoder:
    """Decode and resize the frames of one topic.

    JPEG frames are decoded at 1/2, 1/4 or 1/8 scale (libjpeg's DCT scaling, several times
    faster than a full decode) once the first frame has shown the source size, whenever the
    reduced frame is still at least the target size; the final resize does the rest.
    """

    def __init__(self, msgtype: str, size: tuple[int, int] | None):
        self.compressed = msgtype.endswith("CompressedImage")
        self.size = size
        self._flag = None  # decided on the first JPEG frame

    def __call__(self, msg) -> np.ndarray:
        if not self.compressed:
            rgb = image_to_rgb(msg)
        else:
            jpeg = "jp" in str(msg.format).lower()
            if jpeg and self._flag is not None:
                data = np.frombuffer(memoryview(msg.data), dtype=np.uint8) if not isinstance(
                    msg.data, np.ndarray) else msg.data.view(np.uint8)
                bgr = cv2.imdecode(data, self._flag)
                if bgr is None:
                    raise ImageDecodeError(f"compressed image (format {msg.format!r}) "
                                           "does not decode")
                rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            else:
                rgb = compressed_to_rgb(msg)
                if jpeg and self.size is not None:
                    h, w = self.size
                    self._flag = cv2.IMREAD_COLOR
                    for factor, flag in _REDUCED:
                        if rgb.shape[0] // factor >= h and rgb.shape[1] // factor >= w:
                            self._flag = flag
                            break
        return resize(rgb, self.size) if self.size is not None else rgb

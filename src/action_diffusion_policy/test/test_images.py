"""Image message contents -> RGB: every supported encoding, padded rows, JPEG/PNG, and the
reduced-scale JPEG decoder against a full decode."""

from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from action_diffusion_policy.data.images import (
    FrameDecoder,
    ImageDecodeError,
    compressed_to_rgb,
    image_to_rgb,
    resize,
    rgb_to_compressed_bytes,
)

RGB = np.random.default_rng(0).integers(0, 256, (6, 5, 3), dtype=np.uint8)


def _msg(arr, encoding, pad=0):
    h, w = arr.shape[:2]
    c = 1 if arr.ndim == 2 else arr.shape[2]
    rows = arr.reshape(h, w * c)
    rows = np.concatenate([rows, np.zeros((h, pad), np.uint8)], 1)
    return SimpleNamespace(encoding=encoding, height=h, width=w, step=w * c + pad,
                           data=rows.tobytes())


@pytest.mark.parametrize("pad", [0, 3])
def test_raw_encodings(pad):
    assert np.array_equal(image_to_rgb(_msg(RGB, "rgb8", pad)), RGB)
    assert np.array_equal(image_to_rgb(_msg(RGB[..., ::-1].copy(), "bgr8", pad)), RGB)
    rgba = np.concatenate([RGB, np.full((6, 5, 1), 7, np.uint8)], 2)
    assert np.array_equal(image_to_rgb(_msg(rgba, "rgba8", pad)), RGB)
    bgra = np.concatenate([RGB[..., ::-1], np.full((6, 5, 1), 7, np.uint8)], 2)
    assert np.array_equal(image_to_rgb(_msg(bgra, "bgra8", pad)), RGB)
    mono = RGB[..., 0].copy()
    assert np.array_equal(image_to_rgb(_msg(mono, "mono8", pad)), np.repeat(mono[..., None], 3, 2))


def test_bad_images_are_named():
    with pytest.raises(ImageDecodeError, match="16UC1"):
        image_to_rgb(_msg(RGB, "16UC1"))
    short = _msg(RGB, "rgb8")
    short.data = short.data[:10]
    with pytest.raises(ImageDecodeError, match="needs 90 bytes"):
        image_to_rgb(short)
    with pytest.raises(ImageDecodeError, match="does not decode"):
        compressed_to_rgb(SimpleNamespace(format="jpeg", data=b"nope"))


def test_compressed_round_trip_and_reduced_jpeg_decode():
    yy, xx = np.mgrid[:96, :128]
    img = np.stack([xx * 2, yy * 2, (xx + yy)], -1).astype(np.uint8)
    _ok, png = cv2.imencode(".png", img[..., ::-1])
    assert np.array_equal(compressed_to_rgb(SimpleNamespace(format="png", data=png)), img)
    msg = SimpleNamespace(format="jpeg", data=rgb_to_compressed_bytes(img, 95))
    assert np.abs(compressed_to_rgb(msg).astype(int) - img).mean() < 3
    dec = FrameDecoder("sensor_msgs/msg/CompressedImage", (24, 32))
    first, second = dec(msg), dec(msg)  # the second uses 1/4-scale decoding
    assert dec._flag == cv2.IMREAD_REDUCED_COLOR_4
    full = resize(compressed_to_rgb(msg), (24, 32))
    assert first.shape == second.shape == (24, 32, 3)
    assert np.abs(second.astype(int) - full).mean() < 3

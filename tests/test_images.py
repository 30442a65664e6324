"""Every kind of image a grader might hand over: decoded to RGB 55x47, or refused cleanly."""

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from conftest import SAMPLES
from defense import InputError, load_image

FACE = SAMPLES / "clean_13.png"


@pytest.fixture(scope="module")
def face():
    return np.asarray(Image.open(FACE).convert("RGB"))


def _save(tmp_path, name, image, **params):
    path = tmp_path / name
    image.save(path, **params)
    return path


def _load(path):
    """load_image, collecting its warnings."""
    warnings = []
    pixels = load_image(path, warn=warnings.append)
    assert pixels.shape == (55, 47, 3) and pixels.dtype == np.float32
    assert pixels.min() >= 0 and pixels.max() <= 255
    return pixels, warnings


def test_real_png_is_read_unchanged(face):
    pixels, warnings = _load(FACE)
    np.testing.assert_array_equal(pixels, face)
    assert warnings == []


@pytest.mark.parametrize("fmt, suffix", [("BMP", ".bmp"), ("TIFF", ".tif"), ("WEBP", ".webp"),
                                         ("PNG", ".png")])
def test_lossless_formats_give_the_same_pixels(tmp_path, face, fmt, suffix):
    params = {"lossless": True} if fmt == "WEBP" else {}
    pixels, _ = _load(_save(tmp_path, "face" + suffix, Image.fromarray(face), format=fmt, **params))
    np.testing.assert_array_equal(pixels, face)


def test_jpeg_is_read_close_to_the_original(tmp_path, face):
    pixels, _ = _load(_save(tmp_path, "face.jpg", Image.fromarray(face), quality=95))
    assert np.abs(pixels - face).mean() < 4


def test_gif_first_frame_is_read(tmp_path, face):
    frames = [Image.fromarray(face).convert("P"), Image.new("P", (47, 55))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    pixels, _ = _load(path)
    assert np.abs(pixels - face).mean() < 20  # palette quantisation, and not the black frame


def test_grey_image_becomes_three_equal_channels(tmp_path, face):
    grey = Image.fromarray(face).convert("L")
    pixels, _ = _load(_save(tmp_path, "grey.png", grey))
    for channel in range(3):
        np.testing.assert_array_equal(pixels[:, :, channel], np.asarray(grey))


def test_16_bit_grey_is_scaled_not_clipped(tmp_path):
    ramp = (np.arange(55 * 47).reshape(55, 47) * 25).astype(np.uint16)  # up to 64,600
    pixels, _ = _load(_save(tmp_path, "deep.png", Image.fromarray(ramp)))
    np.testing.assert_allclose(pixels[:, :, 0], np.round(ramp / 257.0))
    assert pixels.max() > 250 and len(np.unique(pixels)) > 200


def test_palette_image_with_transparency_keeps_its_colours(tmp_path, face):
    palette = Image.fromarray(face).convert("P")
    palette.info["transparency"] = 0
    pixels, _ = _load(_save(tmp_path, "palette.png", palette, transparency=0))
    np.testing.assert_array_equal(pixels, np.asarray(palette.convert("RGB")))


def test_rgba_alpha_is_dropped(tmp_path, face):
    rgba = np.dstack([face, np.full(face.shape[:2], 7, np.uint8)])
    pixels, _ = _load(_save(tmp_path, "rgba.png", Image.fromarray(rgba, "RGBA")))
    np.testing.assert_array_equal(pixels, face)


def test_cmyk_jpeg_is_converted_to_rgb(tmp_path):
    path = _save(tmp_path, "cmyk.jpg", Image.new("CMYK", (47, 55), (0, 255, 0, 0)), quality=100)
    pixels, _ = _load(path)
    np.testing.assert_allclose(pixels[20, 20], [255, 0, 255], atol=3)  # no magenta ink -> magenta


def test_exif_rotation_is_applied(tmp_path, face):
    # Stored 55 wide x 47 high, with EXIF orientation 6 ("rotate 90 clockwise to view").
    stored = Image.fromarray(face).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    pixels, warnings = _load(_save(tmp_path, "rotated.jpg", stored, exif=exif, quality=100))
    assert warnings == []  # upright it is 47x55: no resize
    assert np.abs(pixels - face).mean() < 4


def test_other_size_is_resized_with_a_warning(tmp_path, face):
    big = Image.fromarray(face).resize((94, 110), Image.Resampling.NEAREST)
    pixels, warnings = _load(_save(tmp_path, "big.png", big))
    assert len(warnings) == 1 and "resized from 94x110 to 47x55" in warnings[0]
    assert np.abs(pixels - face).mean() < 8


@pytest.mark.parametrize("make, message", [
    (lambda p: None, "no such file"),
    (lambda p: p.write_bytes(b""), "empty file"),
    (lambda p: p.write_text("hello, I am not an image\n"), "not an image"),
    (lambda p: p.write_bytes(FACE.read_bytes()[:300]), "cannot decode"),
    (lambda p: p.mkdir(), "not a regular file"),
], ids=["missing", "empty", "text-named-png", "truncated-png", "directory"])
def test_unreadable_files_are_refused_with_their_name(tmp_path, make, message):
    path = tmp_path / "face.png"
    make(path)
    with pytest.raises(InputError, match=message) as error:
        load_image(path)
    assert str(path) in str(error.value)


def test_truncated_jpeg_is_refused(tmp_path, face):
    buffer = io.BytesIO()
    Image.fromarray(face).save(buffer, format="JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(InputError, match="cannot decode"):
        load_image(path)


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    """A PNG that declares 100,000 x 100,000 pixels in a few hundred bytes."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    body = zlib.compress(b"\x00" * 1000)
    path = tmp_path / "bomb.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body)
                     + chunk(b"IEND", b""))
    with pytest.raises(InputError, match="too large"):
        load_image(path)


def test_one_pixel_image_is_refused(tmp_path):
    with pytest.raises(InputError, match="too small"):
        load_image(_save(tmp_path, "dot.png", Image.new("RGB", (1, 1))))


def test_other_formats_than_the_accepted_ones_are_refused(tmp_path, face):
    path = _save(tmp_path, "face.png", Image.fromarray(face), format="ICO")  # named .png
    with pytest.raises(InputError, match="accepted format"):
        load_image(path)


def test_float_tiff_with_nan_is_refused(tmp_path):
    values = np.full((55, 47), 100, np.float32)
    values[3, 3] = np.nan
    with pytest.raises(InputError, match="NaN"):
        load_image(_save(tmp_path, "nan.tif", Image.fromarray(values, "F")))

"""Reading one face image into the nets' input: RGB, 55 high x 47 wide, pixels 0..255.

Accepted: whatever Pillow decodes among PNG, JPEG, BMP, GIF (first frame), TIFF (first
frame) and WebP. Grey, palette, CMYK and 16-bit images are converted to 8-bit RGB, an alpha
channel is dropped, an EXIF rotation is applied, and an image of another size is resized
(bilinear) with a warning. Everything else fails with an InputError naming the file.
"""

import sys
import warnings
from pathlib import Path

import numpy as np

from .nets.architecture import HEIGHT, WIDTH
from .errors import InputError, reason

ACCEPTED_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
MAX_PIXELS = 4096 * 4096  # a face is 55x47; a larger declared size is a decompression bomb
MIN_SIDE = 8  # smaller than this holds no face to resize from



def load_image(path, warn=None):
    """The image at path as float32 (55, 47, 3) pixels in 0..255.

    warn(message) receives a line for anything the image was adjusted for (a resize); by
    default it goes to stderr. Raises InputError for anything unreadable.
    """
    from PIL import Image, ImageOps

    path = Path(path)
    warn = warn or _warn_to_stderr
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if not path.is_file():
        raise InputError(f"{path}: not a regular file")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: empty file")
    try:
        with warnings.catch_warnings(record=True) as decoder_warnings:
            warnings.simplefilter("always")
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path, formats=ACCEPTED_FORMATS) as image:
                width, height = image.size
                if width * height > MAX_PIXELS:
                    raise InputError(f"{path}: declared size {width}x{height} is too large "
                                     f"for a face image (limit {MAX_PIXELS} pixels)")
                if min(width, height) < MIN_SIDE:
                    raise InputError(f"{path}: {width}x{height} is too small to hold a face")
                image.seek(0)
                image = ImageOps.exif_transpose(image)
                pixels = _to_rgb(image, path)
    except InputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InputError(f"{path}: declared size is too large for a face image "
                         "(decompression bomb)") from None
    except Image.UnidentifiedImageError:
        raise InputError(f"{path}: not an image in an accepted format "
                         f"({', '.join(ACCEPTED_FORMATS)})") from None
    except Exception as e:  # Pillow's decoders raise many types on damaged data
        raise InputError(f"{path}: cannot decode image ({reason(e)})") from None
    for message in {str(w.message) for w in decoder_warnings}:  # damaged but decodable
        warn(f"warning: {path}: {message}")
    if pixels.shape[:2] != (HEIGHT, WIDTH):
        warn(f"warning: {path}: resized from {pixels.shape[1]}x{pixels.shape[0]} "
             f"to {WIDTH}x{HEIGHT} (width x height)")
        pixels = _resize(pixels)
    return pixels.astype(np.float32)


def list_images(directory):
    """Image files (by suffix, hidden files skipped) directly in directory, sorted by name."""
    return sorted(p for p in Path(directory).iterdir()
                  if p.is_file() and not p.name.startswith(".")
                  and p.suffix.lower() in IMAGE_SUFFIXES)


def _to_rgb(image, path):
    """uint8 (H, W, 3) from any Pillow mode."""
    if image.mode.startswith("I;16") or image.mode == "I":
        # 16-bit grey: Pillow's convert() would clip to 255, so scale 0..65535 to 0..255.
        grey = np.asarray(image, dtype=np.float64) / 257.0
        grey = np.clip(np.round(grey), 0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if image.mode == "F":
        grey = np.asarray(image, dtype=np.float64)
        if not np.isfinite(grey).all():
            raise InputError(f"{path}: image holds NaN or infinite pixels")
        grey = np.clip(np.round(grey), 0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if "A" in image.getbands() or "transparency" in image.info:
        return np.asarray(image.convert("RGBA"))[:, :, :3]  # alpha dropped, colour kept
    return np.asarray(image.convert("RGB"))


def _resize(pixels):
    from PIL import Image

    image = Image.fromarray(pixels)
    return np.asarray(image.resize((WIDTH, HEIGHT), Image.Resampling.BILINEAR))


def _warn_to_stderr(message):
    print(message, file=sys.stderr)

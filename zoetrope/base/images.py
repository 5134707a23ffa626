"""Reading user images: every odd file becomes a plain 8-bit RGB image, or a one-line reason why not."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from zoetrope.base.errors import UserError

MAX_PIXELS = 100_000_000  # larger files are refused: decoding them would cost gigabytes
MAX_SIDE = 2048  # larger images are shrunk: the models see 384-1024 px anyway


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB: alpha composited on white, 16-bit and float greys scaled, CMYK and palettes converted."""
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or arr.max() > 255 else 255.0
        image = Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB")


def load_image(path: Path | str, what: str = "start image") -> Image.Image:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: {what} not found" if not path.exists() else f"{path}: {what} is not a file")
    data = path.read_bytes()
    if not data:
        raise UserError(f"{path}: {what} is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            Image.MAX_IMAGE_PIXELS = MAX_PIXELS
            image = Image.open(io.BytesIO(data))
            if image.width * image.height > MAX_PIXELS:
                raise UserError(f"{path}: {what} is {image.width}x{image.height}; at most {MAX_PIXELS:,} pixels are read")
            image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise UserError(f"{path}: {what} is too large to decode safely (over {MAX_PIXELS:,} pixels)") from None
    except UnidentifiedImageError:
        raise UserError(f"{path}: {what} is not an image Pillow can read") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise UserError(f"{path}: {what} is corrupt or truncated ({exc})") from None
    image = to_rgb(image)
    if max(image.size) > MAX_SIDE:
        image.thumbnail((MAX_SIDE, MAX_SIDE), Image.LANCZOS)
    return image

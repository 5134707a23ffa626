"""PNG encoding for step images and film frames, fast enough to hide beside the model.

Pillow's PNG encoder tries all five row filters on every row, in scalar C: 3 ms for a 256 px image on this
project's reference machine before deflate even starts, 7-8 ms in all. A loop that encodes while the model
paints on the same cores pays that time out of the model's. Here the whole image gets the Average filter
(one numpy expression) and Huffman-only deflate: ~1.2 ms for the same image, and files within a few percent of
Pillow's level 6 on noisy images and smaller on smooth ones (filtered residuals are small numbers, which
entropy coding alone captures; the idea behind fpnge). The output is a plain PNG that any reader decodes.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np
from PIL import Image

SIGNATURE = b"\x89PNG\r\n\x1a\n"
COLOUR_TYPES = {"L": 0, "RGB": 2, "RGBA": 6}  # 8 bits per sample
AVERAGE = 3  # PNG filter type


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)))


def _text_chunk(key: str, value: str) -> bytes:
    """tEXt when the value is Latin-1 (as Pillow and AUTOMATIC1111 write it), else uncompressed UTF-8 iTXt."""
    try:
        return _chunk(b"tEXt", key.encode("latin-1") + b"\0" + value.encode("latin-1"))
    except UnicodeEncodeError:
        # keyword, NUL, compression flag 0, method 0, empty language tag, empty translated keyword, text
        return _chunk(b"iTXt", key.encode("latin-1") + b"\0\0\0\0\0" + value.encode("utf-8"))


def average_filtered(pixels: np.ndarray) -> bytes:
    """Rows prefixed by filter type 3: each byte minus floor((left + up) / 2), from the unfiltered image."""
    height, width, channels = pixels.shape
    rows = pixels.reshape(height, width * channels)
    neighbours = np.zeros(rows.shape, np.uint16)
    neighbours[:, channels:] = rows[:, :-channels]
    neighbours[1:] += rows[:-1]
    out = np.empty((height, width * channels + 1), np.uint8)
    out[:, 0] = AVERAGE
    np.subtract(rows, (neighbours >> 1).astype(np.uint8), out=out[:, 1:])  # modulo 256, as PNG wants
    return out.tobytes()


def encode(image: Image.Image, text: dict[str, str] | None = None) -> bytes:
    """The image (L, RGB or RGBA; other modes become RGB) as PNG bytes, with `text` as text chunks."""
    if image.mode not in COLOUR_TYPES:
        image = image.convert("RGB")
    pixels = np.asarray(image)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    height, width = pixels.shape[:2]
    header = struct.pack(">IIBBBBB", width, height, 8, COLOUR_TYPES[image.mode], 0, 0, 0)
    deflate = zlib.compressobj(1, zlib.DEFLATED, 15, 9, zlib.Z_HUFFMAN_ONLY)
    data = deflate.compress(average_filtered(pixels)) + deflate.flush()
    texts = b"".join(_text_chunk(k, v) for k, v in (text or {}).items())
    return SIGNATURE + _chunk(b"IHDR", header) + texts + _chunk(b"IDAT", data) + _chunk(b"IEND", b"")

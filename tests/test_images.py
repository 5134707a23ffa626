"""Start images: odd formats are converted to 8-bit RGB; broken files are refused with one line."""

import numpy as np
import pytest
from PIL import Image

from zoetrope.base.errors import UserError
from zoetrope.base.images import MAX_SIDE, load_image


def save(tmp_path, image: Image.Image, name: str, **kwargs):
    path = tmp_path / name
    image.save(path, **kwargs)
    return path


@pytest.mark.parametrize("mode, name", [("CMYK", "c.jpg"), ("L", "g.png"), ("P", "p.png"), ("1", "b.png")])
def test_colour_modes_become_rgb(tmp_path, mode, name):
    image = Image.new("RGB", (40, 30), (200, 100, 50)).convert(mode)
    loaded = load_image(save(tmp_path, image, name))
    assert loaded.mode == "RGB" and loaded.size == (40, 30)


def test_rgba_is_composited_on_white(tmp_path):
    image = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
    assert load_image(save(tmp_path, image, "a.png")).getpixel((0, 0)) == (255, 255, 255)


def test_16_bit_grey_is_scaled_not_clipped(tmp_path):
    arr = np.full((10, 10), 32768, np.uint16)
    path = save(tmp_path, Image.fromarray(arr), "g16.png")
    assert Image.open(path).mode.startswith("I")
    assert load_image(path).getpixel((0, 0)) == (128, 128, 128)


def test_huge_images_are_shrunk(tmp_path):
    path = save(tmp_path, Image.new("RGB", (5000, 1000), "red"), "wide.png")
    assert max(load_image(path).size) == MAX_SIDE


def test_decompression_bombs_are_refused(tmp_path, monkeypatch):
    import zoetrope.base.images as images

    monkeypatch.setattr(images, "MAX_PIXELS", 1000)
    path = save(tmp_path, Image.new("RGB", (100, 100)), "big.png")
    with pytest.raises(UserError, match="too large|at most"):
        load_image(path)


@pytest.mark.parametrize("content, message", [
    (b"", "is empty"),
    (b"this is not an image at all", "not an image"),
    (None, "corrupt or truncated"),
])
def test_broken_files_are_one_line_errors(tmp_path, content, message):
    path = tmp_path / "bad.png"
    if content is None:  # a real PNG cut in half
        good = save(tmp_path, Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)), "g.png")
        content = good.read_bytes()[: len(good.read_bytes()) // 2]
    path.write_bytes(content)
    with pytest.raises(UserError, match=message) as info:
        load_image(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(UserError, match="not a file"):
        load_image(tmp_path)

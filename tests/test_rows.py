"""The film painter call width: what fits the device's memory, chosen once per frame cache."""

import json

import pytest

from zoetrope.base.errors import UserError
from zoetrope.film.rows import MAX_ROWS, call_rows, measure_rows, rows_that_fit
from zoetrope.settings.params import PaintParams

GIB = 1 << 30


def test_rows_that_fit_is_the_largest_power_of_two_in_the_memory_share():
    assert rows_that_fit(10 * GIB, 1 * GIB, GIB // 2) == 8  # (8 - 1) / 0.5 = 14 rows fit: 8
    assert rows_that_fit(80 * GIB, 2 * GIB, GIB // 4) == MAX_ROWS  # capped
    assert rows_that_fit(2 * GIB, 3 * GIB, GIB) == 1  # nothing fits: one row, and the device says so itself
    assert rows_that_fit(10 * GIB, 0, 0) == MAX_ROWS  # a zero row cost does not divide by zero


def test_measured_on_cpu_is_the_fallback(tiny_painter):
    assert measure_rows(tiny_painter, PaintParams(width=64, height=64), 8) == 8


def test_call_rows_measures_once_per_painter_and_size(tmp_path):
    measured = []

    def measure(n):
        return lambda: measured.append(n) or n

    identity = {"model": "m", "device": "cuda", "dtype": "float16"}
    small, large = PaintParams(width=64, height=64), PaintParams(width=128, height=128)
    assert call_rows(tmp_path, identity, small, measure(16)) == 16
    assert call_rows(tmp_path, identity, small, measure(4)) == 16  # remembered: the frames keep their keys
    assert call_rows(tmp_path, identity, large, measure(4)) == 4
    assert measured == [16, 4]
    assert sorted(json.loads((tmp_path / "rows.json").read_text()).values()) == [4, 16]


def test_a_damaged_record_is_named(tmp_path):
    (tmp_path / "rows.json").write_text("{nope")
    with pytest.raises(UserError, match="rows.json: not valid JSON"):
        call_rows(tmp_path, {}, PaintParams(), lambda: 8)

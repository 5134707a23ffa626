"""The film painter call width: what fits the device's memory, chosen once per frame cache."""

import json

import pytest
import torch

from zoetrope.base.errors import UserError
from zoetrope.film.rows import (
    CPU_MAX_ROWS,
    MAX_ROWS,
    TIMINGS,
    CallShape,
    call_shape,
    cpu_rows,
    film_rows,
    film_seconds,
    measure_decode,
    measure_rows,
    measure_shape,
    rows_that_fit,
)
from zoetrope.settings.params import PaintParams

GIB = 1 << 30


def test_rows_that_fit_is_the_largest_power_of_two_in_the_memory_share():
    assert rows_that_fit(10 * GIB, 1 * GIB, GIB // 2) == 8  # (8 - 1) / 0.5 = 14 rows fit: 8
    assert rows_that_fit(80 * GIB, 2 * GIB, GIB // 4) == MAX_ROWS  # capped
    assert rows_that_fit(2 * GIB, 3 * GIB, GIB) == 1  # nothing fits: one row, and the device says so itself
    assert rows_that_fit(10 * GIB, 0, 0) == MAX_ROWS  # a zero row cost does not divide by zero


class Clock:
    """rows.py's clocks, advanced by the fake painter's calls: timings without sleeping."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class TimedPainter:
    """A painter whose call of n rows takes `fixed + n x per_row` seconds (per step), or `per_frame[n]` x n
    where given, and runs out of memory above `fits` rows."""

    def __init__(self, clock, fixed, per_row, fits=64, device="cpu", per_frame=None):
        import types

        self.clock, self.fixed, self.per_row, self.fits = clock, fixed, per_row, fits
        self.per_frame = per_frame or {}
        self.plan = types.SimpleNamespace(device=device)
        self.calls: list[tuple[int, int]] = []
        self.decode_rows: list[int | None] = []

    def encode(self, prompts, negatives, guidance):
        return {"prompt_embeds": torch.zeros(1, 77, 8)}

    def noise(self, seeds, width, height):
        return torch.zeros(1, 4, height // 8, width // 8)

    def paint(self, *, params, latents, prompt_embeds, decode_rows=None):
        rows = latents.shape[0]
        self.decode_rows.append(decode_rows)
        assert prompt_embeds["prompt_embeds"].shape[0] == rows
        self.calls.append((rows, params.steps))
        if rows > self.fits:
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 123 bytes")
        self.clock.now += params.steps * (rows * self.per_frame[rows] if rows in self.per_frame
                                          else self.fixed + rows * self.per_row)


@pytest.fixture
def clock(monkeypatch):
    from zoetrope.film import rows

    clock = Clock()
    monkeypatch.setattr(rows.time, "perf_counter", clock)
    monkeypatch.setattr(rows.time, "process_time", clock)
    return clock


def test_the_fastest_width_per_frame_is_chosen(clock):
    params = PaintParams(steps=8, width=64, height=64)
    overhead = TimedPainter(clock, fixed=1.0, per_row=0.1)  # a call's fixed cost dominates: batching pays
    assert measure_rows(overhead, params, 8) == 8
    assert {rows for rows, _ in overhead.calls} == {1, 2, 4, 8}  # never past the cap
    assert {steps for _, steps in overhead.calls} == {1, 4}  # warm-up of 1 step, timed probes of PROBE_STEPS
    compute = TimedPainter(clock, fixed=0.01, per_row=1.0)  # rows fill the device: one row a call
    assert measure_rows(compute, params, 8) == 1
    assert max(rows for rows, _ in compute.calls) == 8  # flat: each width tried, none saved 5%
    spilling = TimedPainter(clock, fixed=0.01, per_row=1.0, per_frame={2: 1.3})
    assert measure_rows(spilling, params, 8) == 1
    assert max(rows for rows, _ in spilling.calls) == 2  # 2 was clearly slower per frame: wider was not tried
    noisy = TimedPainter(clock, fixed=0.01, per_row=1.0, per_frame={1: 1.0, 2: 1.03, 4: 0.8, 8: 0.9})
    assert measure_rows(noisy, params, 8) == 4  # a flat step (2) does not end the search
    middle = TimedPainter(clock, fixed=1.0, per_row=3.0)  # per frame 4, 3.5, 3.25, then 8 saves under 5%
    assert measure_rows(middle, params, 8) == 4


def test_a_short_film_gets_the_width_that_paints_it_soonest(clock):
    """Per frame 2, 1.5, 1.25, 1.125, 1.0625: 16 rows are fastest a frame, but 9 frames in one 16-row call
    pay for 7 padding rows; in calls of 2 they take 5 calls of 1.5 a row (15 against 17)."""
    assert [film_rows(n, lanes) for n, lanes in ((15, 2), (16, 2), (17, 2), (31, 2), (1, 2), (3, 1))] \
        == [8, 8, 16, 16, 1, 4]
    assert film_seconds(1.0, 16, 2, 31) == 32.0 and film_seconds(1.0, 8, 2, 31) == 32.0
    assert film_seconds(1.0, 8, 2, 15) == 16.0 and film_seconds(0.5, 8, 2, None) == 0.5
    params = PaintParams(steps=4, width=64, height=64)
    long = TimedPainter(clock, fixed=1.0, per_row=1.0)
    assert measure_rows(long, params, 16) == 16
    short = TimedPainter(clock, fixed=1.0, per_row=1.0)
    assert measure_rows(short, params, 16, frames=9) == 2
    lanes = TimedPainter(clock, fixed=1.0, per_row=1.0)
    assert measure_rows(lanes, params, 16, lanes=2, frames=15) == 8  # 2 calls of 8 fill the 2 lanes
    assert max(rows for rows, _ in lanes.calls) == 8  # 16 was not probed: one lane would idle


class HiccupPainter(TimedPainter):
    """A TimedPainter whose first `slow` timed calls of `rows` rows take `factor` times as long (the machine
    was busy just then)."""

    def __init__(self, clock, rows: int, slow: int, factor: float, **kw):
        super().__init__(clock, **kw)
        self.hiccup = [rows, slow, factor]

    def paint(self, *, params, latents, prompt_embeds, decode_rows=None):
        before = self.clock.now
        super().paint(params=params, latents=latents, prompt_embeds=prompt_embeds, decode_rows=decode_rows)
        rows, slow, factor = self.hiccup
        if latents.shape[0] == rows and params.steps > 1 and slow > 0:
            self.clock.now += (factor - 1) * (self.clock.now - before)
            self.hiccup[1] -= 1


def test_a_busy_moment_does_not_end_the_search(clock):
    """4 rows timed while the machine was busy look 50% slower; timed again beside the fastest, they are not,
    and the search goes on to 8."""
    params = PaintParams(steps=4, width=64, height=64)
    per_frame = {1: 2.0, 2: 1.5, 4: 1.2, 8: 1.0}
    busy = HiccupPainter(clock, 4, slow=TIMINGS, factor=1.5, fixed=0.0, per_row=0.0, per_frame=per_frame)
    assert measure_rows(busy, params, 8) == 8
    slow = HiccupPainter(clock, 4, slow=100, factor=1.5, fixed=0.0, per_row=0.0, per_frame=per_frame)
    assert measure_rows(slow, params, 8) == 2  # slower every time: the search ends at 4
    assert max(rows for rows, _ in slow.calls) == 4


def test_a_width_that_does_not_fit_ends_the_search(clock):
    painter = TimedPainter(clock, fixed=1.0, per_row=0.1, fits=2)
    assert measure_rows(painter, PaintParams(width=64, height=64), 8) == 2
    broken = TimedPainter(clock, fixed=1.0, per_row=0.1, fits=0)
    assert measure_rows(broken, PaintParams(width=64, height=64), 8) == 1  # the render itself will say why


def test_other_errors_are_not_taken_for_a_full_memory(clock):
    painter = TimedPainter(clock, fixed=1.0, per_row=0.1)
    painter.paint = lambda **kw: (_ for _ in ()).throw(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        measure_rows(painter, PaintParams(width=64, height=64), 8)


def test_measured_on_the_tiny_painter_on_cpu(tiny_painter):
    assert measure_rows(tiny_painter, PaintParams(steps=1, width=64, height=64), 4) in (1, 2, 4)


def test_measured_on_lanes_as_the_render_paints(tiny_painter, monkeypatch):
    """At one thread a call on a machine of 2 torch threads, the probe runs 2 calls side by side, as the render."""
    import zoetrope.stages.lanes as lanes

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    widths = []
    real = lanes.in_order

    def spy(paint, batches, n):
        widths.append(n)
        return real(paint, batches, n)

    monkeypatch.setattr(lanes, "in_order", spy)
    try:
        assert measure_rows(tiny_painter, PaintParams(steps=1, width=64, height=64), 4, threads=1) in (1, 2, 4)
        assert set(widths) == {2} and torch.get_num_threads() == 2
        widths.clear()
        measure_rows(tiny_painter, PaintParams(steps=1, width=64, height=64), 2)  # the process's threads: 1 lane
        assert set(widths) == {1}
    finally:
        torch.set_num_threads(before)


def test_call_shape_measures_once_per_painter_and_size(tmp_path):
    measured = []

    def measure(n):
        return lambda threads: measured.append((n, threads)) or (n, n)

    identity = {"model": "m", "device": "cuda", "dtype": "float16"}
    small, large = PaintParams(width=64, height=64), PaintParams(width=128, height=128)
    assert call_shape(tmp_path, identity, small, measure(16)) == CallShape(16, None)
    assert call_shape(tmp_path, identity, small, measure(4)) == CallShape(16, None)  # remembered: the same keys
    assert call_shape(tmp_path, identity, large, measure(4)) == CallShape(4, None)
    assert measured == [(16, None), (4, None)]
    recorded = json.loads((tmp_path / "rows.json").read_text()).values()
    assert sorted(c["rows"] for c in recorded) == [4, 16] and {c["threads"] for c in recorded} == {None}
    assert sorted(c["decode"] for c in recorded) == [4, 16]  # decoded whole: CallShape.decode None, keys as before


def test_cpu_calls_are_fixed_at_one_thread_and_older_choices_keep_the_process_count(tmp_path):
    cpu = {"model": "m", "device": "cpu", "dtype": "float32"}
    asked = []
    assert call_shape(tmp_path, cpu, PaintParams(), lambda threads: asked.append(threads) or (4, 2)) \
        == CallShape(4, 1, 2)
    assert asked == [1]  # measured at the threads the frames are painted at
    assert call_shape(tmp_path, cpu, PaintParams(), None, rows=4) == CallShape(4, 1, 2)  # --rows as recorded
    assert call_shape(tmp_path, cpu, PaintParams(), None, rows=8) == CallShape(8, 1)  # another width: decoded whole
    assert call_shape(tmp_path / "none", cpu, PaintParams(), None, rows=2) == CallShape(2, 1)  # --rows: no record
    assert not (tmp_path / "none").exists()
    older = tmp_path / "older"  # a 0.4 cache: the width alone
    key = next(iter(json.loads((tmp_path / "rows.json").read_text())))
    older.mkdir()
    (older / "rows.json").write_text(json.dumps({key: 8}))
    assert call_shape(older, cpu, PaintParams(), None) == CallShape(8, None)
    assert call_shape(older, cpu, PaintParams(), None, rows=2) == CallShape(2, None)
    (older / "rows.json").write_text(json.dumps({key: {"rows": 8, "threads": 1}}))  # a 0.5 cache: decoded whole
    assert call_shape(older, cpu, PaintParams(), None) == CallShape(8, 1)
    for bad in ({"rows": "eight"}, {"rows": 4, "threads": 1, "decode": 8}, {"rows": 4, "threads": True}):
        (older / "rows.json").write_text(json.dumps({key: bad}))
        with pytest.raises(UserError, match=r"rows.json: a choice must be"):
            call_shape(older, cpu, PaintParams(), None)


def test_a_damaged_record_is_named(tmp_path):
    (tmp_path / "rows.json").write_text("{nope")
    with pytest.raises(UserError, match="rows.json: not valid JSON"):
        call_shape(tmp_path, {}, PaintParams(), lambda threads: (8, 8))


class DecodingPainter(TimedPainter):
    """A lean painter whose VAE call of n latents takes `fixed + n x per_row`, plus `spill` for each latent past
    `fits_cache` (activations that no longer fit the CPU's cache)."""

    def __init__(self, clock, fixed, per_row, fits_cache=64, spill=0.0, lean=True, device="cpu"):
        super().__init__(clock, fixed=0.0, per_row=0.0, device=device)
        self.vae = (fixed, per_row, fits_cache, spill)
        self.is_lean, self.decoded = lean, []
        self.plan.dtype = torch.float32

    def lean(self, prompt_embeds, params):
        return self.is_lean

    def decode(self, latents, rows=None, keep=None):
        fixed, per_row, fits_cache, spill = self.vae
        step = rows or latents.shape[0]
        self.decoded.append(step)
        for start in range(0, latents.shape[0], step):
            n = min(step, latents.shape[0] - start)
            self.clock.now += fixed + n * per_row + max(0, n - fits_cache) * spill
        return [None] * latents.shape[0]


def test_the_vae_width_is_the_fastest_slice_and_whole_unless_narrower_pays(clock):
    params = PaintParams(width=64, height=64)
    spills = DecodingPainter(clock, fixed=0.1, per_row=1.0, fits_cache=2, spill=0.5)
    assert measure_decode(spills, params, 8) == 2
    assert set(spills.decoded) == {8, 4, 2, 1}  # every width, in rotation: 1 was no faster than 2
    assert spills.decoded[:8] == [8, 4, 2, 1] * 2  # warm-ups, then the first timed round
    flat = DecodingPainter(clock, fixed=0.5, per_row=1.0)  # narrower only adds calls
    assert measure_decode(flat, params, 8) == 8
    pipeline = DecodingPainter(clock, fixed=0.1, per_row=1.0, fits_cache=2, spill=0.5, lean=False)
    assert measure_decode(pipeline, params, 8) == 8 and pipeline.decoded == []  # its pipeline decodes whole
    assert measure_decode(spills, params, 1) == 1
    gpu = DecodingPainter(clock, fixed=0.1, per_row=1.0, fits_cache=2, spill=0.5, device="cuda")
    assert measure_decode(gpu, params, 8) == 8 and gpu.decoded == []  # GPUs decode whole


def test_the_call_width_is_probed_decoding_in_the_vae_width(clock, monkeypatch):
    from zoetrope.film import rows

    params = PaintParams(steps=4, width=64, height=64)
    painter = DecodingPainter(clock, fixed=0.1, per_row=1.0, fits_cache=2, spill=0.5)
    painter.fixed = 1.0  # a call's fixed cost: batching pays up to the cap
    monkeypatch.setattr(rows, "available_bytes", lambda: None)  # memory not measured: the fallback caps
    assert measure_shape(painter, params, 8) == (8, 2)
    assert set(painter.decode_rows) == {None, 2}  # 1 and 2 rows decode whole, wider calls in slices of 2
    whole = DecodingPainter(clock, fixed=0.5, per_row=1.0)
    whole.fixed = 1.0
    assert measure_shape(whole, params, 8) == (8, 8) and set(whole.decode_rows) == {None}


def test_slices_decode_the_rows_the_whole_call_decodes(tiny_painter):
    """On the tiny painter: the same images whatever the slice's place, and padding slices are not decoded."""
    latents = torch.randn(4, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    whole = [im.tobytes() for im in tiny_painter.decode(latents)]
    sliced = tiny_painter.decode(latents, 2, keep=3)
    assert len(sliced) == 4  # the slice holding row 2 is decoded whole
    assert measure_decode(tiny_painter, PaintParams(steps=1, width=64, height=64), 4) in (1, 2, 4)
    again = tiny_painter.decode(torch.cat([latents[1:2]] * 4), 2, keep=1)
    assert len(again) == 2 and again[0].tobytes() == [im.tobytes() for im in sliced][1]
    assert [im.tobytes() for im in tiny_painter.decode(latents, 4, keep=1)] == whole


def fake_memory(monkeypatch, painter, free: int | None, fixed: int, per_row: int) -> None:
    """rows.py's memory counters for a fake painter: each call it makes while measured takes fixed + rows x
    per_row bytes, and the calls of one measurement (one per lane) are held at once."""
    from zoetrope.film import rows

    def rise(run):
        before = len(painter.calls)
        run()
        return sum(fixed + n * per_row for n, _ in painter.calls[before:])

    monkeypatch.setattr(rows, "resident_rise", rise)
    monkeypatch.setattr(rows, "available_bytes", lambda: free)


def test_cpu_calls_are_as_wide_as_memory_holds_on_every_lane(clock, monkeypatch):
    params = PaintParams(width=64, height=64)
    painter = TimedPainter(clock, fixed=1.0, per_row=0.1)
    fake_memory(monkeypatch, painter, 6 * GIB, GIB, GIB // 2)
    assert cpu_rows(painter, params, 8, 1, lanes=1) == 4  # (0.8 x 6 - 1) / 0.5 = 7.6 rows fit
    assert {rows for rows, _ in painter.calls} == {1, 2}  # a 1-row and a 2-row call, one step each
    assert cpu_rows(painter, params, 8, 1, lanes=2) == 2  # two lanes hold two calls: (4.8 - 2) / 1 = 2.8
    fake_memory(monkeypatch, painter, 64 * GIB, GIB, GIB // 2)
    assert cpu_rows(painter, params, 8, 1, lanes=1) == CPU_MAX_ROWS  # plenty: past the fallback, to the CPU cap
    fake_memory(monkeypatch, painter, None, GIB, GIB // 2)
    assert cpu_rows(painter, params, 8, 1, lanes=1) == 8  # no counters (not Linux): the fallback
    fake_memory(monkeypatch, painter, GIB // 2, GIB, GIB // 2)
    assert cpu_rows(painter, params, 8, 1, lanes=1) == 1  # nothing fits: one row, and the render says why


def test_the_shape_is_measured_within_what_memory_holds(clock, monkeypatch):
    """The VAE and call-width probes never go past the memory bound, and past the fallback where it allows."""
    params = PaintParams(steps=4, width=64, height=64)
    bounded = DecodingPainter(clock, fixed=0.1, per_row=1.0, fits_cache=2, spill=0.5)
    bounded.fixed = 1.0  # batching pays up to the cap
    fake_memory(monkeypatch, bounded, 6 * GIB, GIB, GIB // 2)
    assert measure_shape(bounded, params, 8) == (4, 2)
    assert max(rows for rows, _ in bounded.calls) == 4 and max(bounded.decoded) == 4
    roomy = DecodingPainter(clock, fixed=0.1, per_row=1.0, fits_cache=2, spill=0.5)
    roomy.fixed = 1.0
    fake_memory(monkeypatch, roomy, 64 * GIB, GIB, GIB // 2)
    assert measure_shape(roomy, params, 8) == (CPU_MAX_ROWS, 2)
    short = DecodingPainter(clock, fixed=0.1, per_row=1.0, fits_cache=2, spill=0.5)
    short.fixed = 1.0
    fake_memory(monkeypatch, short, 64 * GIB, GIB, GIB // 2)
    assert measure_shape(short, params, 8, frames=3) == (4, 2)  # 3 frames: no call wider than 4 is probed
    assert max(rows for rows, _ in short.calls) == 4 and max(short.decoded) == 4
    gpu = TimedPainter(clock, fixed=1.0, per_row=0.1, device="cuda")
    fake_memory(monkeypatch, gpu, 6 * GIB, GIB, GIB // 2)
    monkeypatch.setattr("zoetrope.film.rows._cuda_rows", lambda call, params: 8)
    assert measure_shape(gpu, params, 8) == (8, 8)  # a GPU's own counters bound it, not the host's


def test_cpu_rows_on_the_tiny_painter_with_linux_counters(tiny_painter, monkeypatch):
    """The real counters: the tiny painter's calls at 64 px are a few MiB, so the CPU cap holds them; with
    nothing free, one row."""
    from zoetrope.base.memory import available_bytes
    from zoetrope.film import rows

    params = PaintParams(steps=1, width=64, height=64)
    if available_bytes() is None:
        pytest.skip("no /proc/meminfo here: cpu_rows keeps the fallback (tested with fakes above)")
    assert cpu_rows(tiny_painter, params, 8, 1, 1) == CPU_MAX_ROWS
    monkeypatch.setattr(rows, "available_bytes", lambda: 0)
    assert cpu_rows(tiny_painter, params, 8, 1, 1) == 1

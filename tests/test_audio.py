"""Audio analysis for synced films (zoetrope/film/audio.py), on synthetic WAVs written with the `wave` module:
clicks at known times over silence, so we know where the onsets are and where t must jump."""

from __future__ import annotations

import ast
import random
import sys
import wave
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from zoetrope.base.errors import UserError
from zoetrope.film import audio as au
from zoetrope.settings.timing import frame_count, transition_ts

FPS = 24
CLICKS = [1.0, 2.5, 4.0]


def write_wav(path: Path, clicks=(), seconds=6.0, rate=44100, tone: float | None = None, channels=1) -> Path:
    """A 16-bit WAV: silence (or a quiet tone) with a short decaying click at each time in `clicks`."""
    n = int(round(seconds * rate))
    y = np.zeros(n)
    if tone:
        y += 0.3 * np.sin(2 * np.pi * tone * np.arange(n) / rate)
    k = np.arange(200)
    for c in clicks:
        i = int(c * rate)
        y[i:i + 200] += (0.9 * np.exp(-k / 30) * np.sign(np.sin(k)))[: max(0, n - i)]
    pcm = (np.clip(y, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.repeat(pcm, channels).tobytes())
    return path


@pytest.fixture(scope="module")
def clicks(tmp_path_factory):
    """The 6 s click track, loaded, and its onset strength at 24 fps (computed once: HPSS is the slow part)."""
    path = write_wav(tmp_path_factory.mktemp("audio") / "clicks.wav", CLICKS)
    audio = au.load_audio(path)
    return audio, au.frame_strength(audio, FPS, "onsets")


def write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def peaks(strength: np.ndarray, k: int) -> list[int]:
    """The k strongest frames, in film order."""
    return sorted(int(i) for i in np.argsort(strength)[::-1][:k])


def transition_ts_over(strength: np.ndarray) -> list[float]:
    """One keyframe held 0.5 s, a transition to the next, which is held 0.5 s: the transition's t per frame."""
    holds, transitions = au.synced_frames([0.5, 0.5], [5.0], 6.0, FPS)
    start = holds[0]
    return au.synced_ts(strength[start:start + transitions[0]], transitions[0], "ease-in-out").ts


# ------------------------------------------------------------------------------------------------ loading


def test_module_imports_without_the_extra():
    """librosa and matplotlib load inside functions only, so `check` and plain renders never need them."""
    tree = ast.parse(Path(au.__file__).read_text())
    top = {alias.name.split(".")[0] for node in tree.body if isinstance(node, ast.Import) for alias in node.names}
    top |= {node.module.split(".")[0] for node in tree.body if isinstance(node, ast.ImportFrom) and node.module}
    assert not top & {"librosa", "matplotlib", "soundfile", "torch"}


def test_missing_extra_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "librosa", None)  # `import librosa` now raises ImportError
    with pytest.raises(UserError, match=r"\.venv/bin/pip install -e '\.\[audio\]'"):
        au.load_audio(write_wav(tmp_path / "a.wav", seconds=0.5))


def test_load_resamples_to_mono_at_the_analysis_rate(tmp_path):
    audio = au.load_audio(write_wav(tmp_path / "s.wav", seconds=1.5, rate=44100, channels=2))
    assert audio.rate == au.ANALYSIS_RATE and audio.samples.ndim == 1 and audio.samples.dtype == np.float32
    assert audio.duration == pytest.approx(1.5, abs=1e-3) and audio.offset == 0.0


def test_start_and_end_cut_the_span_and_times_follow(tmp_path, clicks):
    _, whole = clicks
    audio = au.load_audio(write_wav(tmp_path / "c.wav", CLICKS), start=1.5, end=4.5)
    assert audio.offset == 1.5 and audio.duration == pytest.approx(3.0, abs=1e-3)
    strength = au.frame_strength(audio, FPS, "onsets")
    assert strength.size == 72
    # The clicks at 2.5 s and 4.0 s are film seconds 1.0 and 2.5 now; the one at 1.0 s is cut off.
    assert [round(p / FPS, 1) for p in peaks(strength, 2)] == [1.0, 2.5]
    assert strength.max() == pytest.approx(whole.max(), rel=0.3)


@pytest.mark.parametrize("make, kwargs, reason", [
    (lambda d: d / "missing.wav", {}, "no such audio file"),
    (lambda d: d, {}, "not a file"),
    (lambda d: write_bytes(d / "empty.wav", b""), {}, "empty file"),
    (lambda d: write_bytes(d / "text.wav", b"not audio at all\n"), {}, "not an audio file"),
    (lambda d: write_wav(d / "zero.wav", seconds=0), {}, "no audio samples"),
    (lambda d: write_wav(d / "short.wav", seconds=2), {"start": 3.0}, "start (3.0 s) is past the end"),
    (lambda d: write_wav(d / "short.wav", seconds=2), {"end": 2.5}, "end (2.5 s) is past the end"),
    (lambda d: write_wav(d / "short.wav", seconds=2), {"start": 1.0, "end": 0.5}, "must be after its start"),
    (lambda d: write_wav(d / "short.wav", seconds=2), {"start": -1.0}, "start must be >= 0"),
])
def test_bad_audio_is_one_line_naming_the_path(tmp_path, make, kwargs, reason):
    folder = tmp_path / "in"
    folder.mkdir()
    path = make(folder)
    with pytest.raises(UserError) as info:
        au.load_audio(path, **kwargs)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and reason in message and "\n" not in message


# ------------------------------------------------------------------------------------------------ strength


def test_onsets_are_where_the_clicks_are(clicks):
    audio, strength = clicks
    assert strength.size == frame_count(6.0, FPS) == 144
    assert (strength >= 0).all()
    assert peaks(strength, 3) == [round(c * FPS) for c in CLICKS]
    quiet = np.ones(strength.size, bool)
    for c in CLICKS:
        quiet[round(c * FPS) - 2:round(c * FPS) + 3] = False
    assert strength[quiet].max() < 0.05 * strength.max()  # silence between the clicks rests


def test_energy_follows_loudness(clicks):
    audio, _ = clicks
    energy = au.frame_strength(audio, FPS, "energy")
    assert energy.size == 144 and (energy >= 0).all()
    for c in CLICKS:  # RMS windows (2048 samples) smear a click over about +-1 frame
        assert abs(int(np.argmax(energy[round(c * FPS) - 4:round(c * FPS) + 5])) - 4) <= 1


def test_strength_is_deterministic_at_odd_fps_and_cached(clicks, tmp_path, monkeypatch):
    audio, _ = clicks
    first = au.frame_strength(audio, 29.97, "onsets", cache=tmp_path / "cache")
    assert first.size == frame_count(6.0, 29.97) == 180
    assert all(abs(p - c * 29.97) <= 1 for p, c in zip(peaks(first, 3), CLICKS, strict=True))
    assert len(list((tmp_path / "cache").glob("strength-*.npy"))) == 1
    monkeypatch.setattr(au, "_envelope", lambda *a: pytest.fail("the cached analysis was not used"))
    np.testing.assert_array_equal(au.frame_strength(audio, 29.97, "onsets", cache=tmp_path / "cache"), first)
    monkeypatch.undo()
    np.testing.assert_array_equal(au.frame_strength(audio, 29.97, "onsets"), first)


def test_strength_rejects_bad_arguments(clicks):
    audio, _ = clicks
    with pytest.raises(ValueError, match="`sync` must be one of"):
        au.frame_strength(audio, FPS, "beats")
    with pytest.raises(ValueError, match="`fps` must be a positive number but is 0"):
        au.frame_strength(audio, 0, "energy")


# ------------------------------------------------------------------------------------------------ timing


def test_t_jumps_where_the_clicks_are_and_moves_with_them(tmp_path, clicks):
    _, strength = clicks
    ts = transition_ts_over(strength)
    steps = np.diff([0.0, *ts])
    start = 12  # 0.5 s held
    big = sorted(int(i) + start for i in np.argsort(steps)[::-1][:3])
    assert all(abs(b - round(c * FPS)) <= 1 for b, c in zip(big, CLICKS, strict=True))
    near = sum(steps[round(c * FPS) - start + d] for c in CLICKS for d in (-1, 0, 1))
    assert near > 0.95  # the clicks carry the walk; the silence between them barely moves it

    moved = [1.5, 3.0, 3.5]
    moved_audio = au.load_audio(write_wav(tmp_path / "moved.wav", moved))
    moved_ts = transition_ts_over(au.frame_strength(moved_audio, FPS, "onsets"))
    moved_steps = np.diff([0.0, *moved_ts])
    moved_big = sorted(int(i) + start for i in np.argsort(moved_steps)[::-1][:3])
    assert all(abs(b - round(c * FPS)) <= 1 for b, c in zip(moved_big, moved, strict=True))
    # Which picture each frame paints changes: at 1.25 s the first walk is past a click, the second not yet.
    at = round(1.25 * FPS) - start
    assert len(moved_ts) == len(ts) and ts[at] > 0.3 and moved_ts[at] < 0.01


def test_synced_ts_strictly_inside_and_increasing():
    rng = np.random.default_rng(0)
    for n in (1, 2, 3, 7, 50, 333):
        for strength in ((rng.random(n) + 0.01) ** 8, np.zeros(n) + (np.arange(n) == n // 2), rng.random(n) * 1e-6):
            ts, silent = au.synced_ts(strength, n)
            assert not silent and len(ts) == n
            assert 0.0 < ts[0] and ts[-1] < 1.0 and all(b > a for a, b in zip(ts, ts[1:], strict=False))


def test_synced_ts_constant_strength_is_linear_and_silence_uses_the_easing():
    assert au.synced_ts(np.full(9, 0.3), 9, "ease-in-out").ts == pytest.approx(transition_ts(9, "linear"))
    result = au.synced_ts(np.zeros(9), 9, "ease-in-out")
    assert result.silent and result.ts == transition_ts(9, "ease-in-out")
    assert au.synced_ts([], 0) == ([], False)
    with pytest.raises(ValueError, match="must have n = 4 values but has 3"):
        au.synced_ts([1, 2, 3], 4)
    with pytest.raises(ValueError, match=r"finite and >= 0"):
        au.synced_ts([1, -2, 3], 3)
    with pytest.raises(ValueError, match="`easing` must be one of"):
        au.synced_ts([1, 2], 2, "bounce")


def test_smooth_blends_towards_linear():
    click = np.zeros(11)
    click[3] = 1.0
    sharp, half = au.synced_ts(click, 11).ts, au.synced_ts(click, 11, smooth=0.5).ts
    assert sharp[3] - sharp[2] > 0.8 and half[3] - half[2] == pytest.approx((sharp[3] - sharp[2] + 1 / 12) / 2)
    assert au.synced_ts(click, 11, smooth=1.0).ts == pytest.approx(transition_ts(11))
    assert all(b > a for a, b in zip(half, half[1:], strict=False)) and 0 < half[0] and half[-1] < 1
    with pytest.raises(ValueError, match=r"`smooth` must be in \[0, 1\] but is 2"):
        au.synced_ts(click, 11, smooth=2)


def test_synced_frames_sum_exactly_and_keep_proportions():
    rng = random.Random(15)
    for _ in range(3000):
        k = rng.randint(1, 9)
        holds = [rng.choice([0.0, rng.uniform(0.01, 5), round(rng.uniform(0, 3), 1)]) for _ in range(k)]
        transitions = [rng.choice([0.0, rng.uniform(0.01, 5), 1 / 3]) for _ in range(k - 1)]
        if sum(holds) + sum(transitions) == 0:
            holds[0] = 1.0
        fps = rng.choice([1, 7, 12, 23.976, 24, 25, 29.97, 30, 59.94, 60, 120])
        seconds = rng.choice([rng.uniform(0.05, 300), 6.0, 1 / 3, 10.02083])
        hf, tf = au.synced_frames(holds, transitions, seconds, fps)
        n = frame_count(seconds, fps)
        assert len(hf) == k and len(tf) == k and tf[-1] == 0
        assert sum(hf) + sum(tf) == n and min(hf + tf) >= 0
        total = sum(holds) + sum(transitions)
        for frames, s in zip(hf + tf[:-1], holds + transitions, strict=True):
            assert abs(frames - n * s / total) <= 1.0 + 1e-9
            assert s > 0 or frames == 0


def test_synced_frames_worked_example_and_errors():
    # 6 s at 24 fps = 144 frames over holds 1, 1 and a transition of 2 (4 s): 36 + 72 + 36.
    assert au.synced_frames([1, 1], [2, 0], 6.0, 24) == ([36, 36], [72, 0])
    assert au.synced_frames([1, 1], [2], 6.0, 24) == ([36, 36], [72, 0])
    with pytest.raises(ValueError, match="`transitions_s` needs 2 entries"):
        au.synced_frames([1, 1], [1, 1, 1], 6.0, 24)
    with pytest.raises(ValueError, match="add up to 0 s"):
        au.synced_frames([0.0], [], 6.0, 24)
    with pytest.raises(ValueError, match="`audio_seconds` must be a positive number but is 0"):
        au.synced_frames([1.0], [], 0, 24)


# ------------------------------------------------------------------------------------------------ beats


def test_beats_of_a_click_train(tmp_path):
    train = [0.25 + 0.5 * i for i in range(12)]  # 120 bpm
    audio = au.load_audio(write_wav(tmp_path / "train.wav", train, seconds=6.0))
    beats = au.beat_times(audio)
    assert len(beats) >= 8 and all(0 <= b <= 6.0 for b in beats)
    assert all(min(abs(b - c) for c in train) < 0.05 for b in beats)
    assert np.median(np.diff(beats)) == pytest.approx(0.5, abs=0.03)


def test_snap_to_beats():
    beats = [0.5, 1.0, 1.5, 2.0, 2.5]
    assert au.snap_to_beats([0.9, 1.6, 2.4], beats, fps=24) == [1.0, 1.5, 2.5]
    # Two keyframes nearest to one beat: the second takes the next beat, order kept.
    assert au.snap_to_beats([1.1, 1.2], beats, fps=24) == [1.0, 1.5]
    # Beats closer than a frame: the second time moves on to a beat at least a frame later.
    assert au.snap_to_beats([1.0, 1.01], [1.0, 1.02, 1.5], fps=24) == [1.0, 1.5]
    # No beat left after the previous one: the time stays, or moves one frame past the previous one.
    assert au.snap_to_beats([2.4, 2.45, 3.0], [2.5], fps=24) == pytest.approx([2.5, 2.5 + 1 / 24, 3.0])
    assert au.snap_to_beats([1.0, 2.0], [], fps=24) == [1.0, 2.0]
    with pytest.raises(ValueError, match="`times` must be in order"):
        au.snap_to_beats([2.0, 1.0], beats, fps=24)


# ------------------------------------------------------------------------------------------------ plot


def test_plot_is_a_valid_png_written_atomically(tmp_path, clicks):
    audio, strength = clicks
    holds, transitions = au.synced_frames([0.5, 0.5], [5.0], audio.duration, FPS)
    ts = au.synced_ts(strength[holds[0]:holds[0] + transitions[0]], transitions[0]).ts
    positions = [0.0] * holds[0] + ts + [1.0] * holds[1]
    out = tmp_path / "film.timing.png"
    au.plot_timing(out, audio, FPS, positions, [0, holds[0] + transitions[0]], strength=strength, sync="onsets")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(out) as image:
        image.verify()
    with Image.open(out) as image:
        assert image.size == (1200, 500)
    assert [p.name for p in tmp_path.iterdir()] == ["film.timing.png"]  # no temp file left behind

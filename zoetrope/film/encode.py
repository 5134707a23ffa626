"""Frames -> mp4: one streamed ffmpeg process, titles drawn with Pillow, an .srt sidecar.

Frames are piped one at a time into imageio-ffmpeg's bundled ffmpeg (rawvideo in, H.264 yuv420p out), so a
film's length is not bound by RAM and the output has exactly as many frames as were written: no duration
arithmetic, hence none of moviepy 2.2's float rounding that drops the last frame at 12/24/30 fps. The film
is written under a temp name and renamed on success, so a failed render never leaves a partial film.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import subprocess
import tempfile
import textwrap
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from zoetrope.base.errors import UserError
from zoetrope.base.files import check_outputs, replace_durable, temp_name, write_durable

log = logging.getLogger(__name__)

FILM_SUFFIXES = (".mp4", ".mov", ".mkv")  # containers ffmpeg picks by suffix that hold H.264 and AAC
FONT_PATHS = (
    Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
    Path("/usr/share/fonts/TTF/DejaVuSans.ttf"),
)


def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


class FilmEncodeError(UserError):
    """ffmpeg could not write the film: one line naming the film and ffmpeg's own reason (a full disk, a folder
    that vanished), never a Broken pipe traceback."""


def ffmpeg_reason(stderr: str, tmp: Path | None = None, path: Path | None = None) -> str:
    """ffmpeg's last word: the last line of its stderr that says something, without the `[out#0/mp4 @ 0x..]`
    prefix, and with the temp name it wrote to shown as the film's own path."""
    lines = [re.sub(r"^(\[[^]]*\]\s*)+", "", line).strip() for line in stderr.splitlines()]
    lines = [line for line in lines if line and not line.startswith("Last message repeated")]
    reason = lines[-1] if lines else "no message"
    if tmp is not None and path is not None:
        reason = reason.replace(str(tmp), str(path))
    return reason[:300]


def check_film_output(path: Path, *sidecars: Path) -> None:
    """Every command that writes a film (render, replay play, join) calls this before it reads a frame or loads
    a model: a film suffix, a writable folder, sidecars (the .srt) that are not folders. One UserError line."""
    path = Path(path)
    if path.suffix.lower() not in FILM_SUFFIXES:
        raise UserError(f"--out: a film needs one of {', '.join(FILM_SUFFIXES)} (got {path})")
    check_outputs(path, *sidecars)


def _remove(path: Path) -> None:
    """Remove a temp file we may have made; a failure here (a read-only folder where ffmpeg could not create
    it, EROFS even for a missing file) must never hide the error that got us here."""
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)


class FrameWriter:
    """Stream RGB frames into one ffmpeg process; use as a context manager.

    `with FrameWriter(path, 24, (w, h), audio=song) as film: film.write(image)`. On a clean exit the
    film (with the audio muxed in and cut to the picture's length) is renamed into place; on an exception,
    or when no frame was written, the temp file is removed and nothing appears at `path`. When ffmpeg fails
    (at any frame or when it finishes the file) a FilmEncodeError names `path` and ffmpeg's reason.
    """

    def __init__(self, path: Path, fps: int | float, size: tuple[int, int], *, audio: Path | None = None,
                 crf: int = 18, audio_start: float = 0.0, fps_out: int | float | None = None,
                 audio_filter: str | None = None,
                 frames: int | None = None):
        width, height = size
        if fps <= 0:
            raise ValueError(f"`fps` must be positive but is {fps}.")
        if fps_out is not None:
            if fps_out <= fps:
                raise ValueError(f"`fps_out` must be above the painted `fps` ({fps}) but is {fps_out}.")
            if frames is None or frames < 1:
                raise ValueError(f"`fps_out` needs `frames`, the number of painted frames that will be written, to "
                                 f"cut the interpolated film exactly; got {frames}.")
        if width <= 0 or height <= 0 or width % 2 or height % 2:
            raise ValueError(f"`size` must be even and positive for yuv420p but is {width}x{height}.")
        if not 0 <= crf <= 51:
            raise ValueError(f"`crf` must be in 0..51 but is {crf}.")
        if audio is not None and not Path(audio).is_file():
            raise FileNotFoundError(f"audio file not found: {audio}")
        self.path = Path(path)
        self.fps = fps  # an int, or a float such as a preview's 7.5
        self.size = (int(width), int(height))
        self.audio = Path(audio) if audio is not None else None
        self.audio_start = float(audio_start)  # seconds into the audio file where the film's sound starts
        self.audio_filter = audio_filter  # an ffmpeg audio filter (the gain schedule: film/audio_sync.py)
        self.crf = crf
        self.fps_out = fps_out
        self.frames = frames  # with fps_out: exactly this many painted frames are written
        self.frames_written = 0
        self._tmp = temp_name(self.path, keep_suffix=True)  # ffmpeg picks the container by suffix
        self._proc: subprocess.Popen | None = None
        self._stderr = None

    # ------------------------------------------------------------------------------------- lifecycle

    @property
    def frames_out(self) -> int:
        """Frames in the film: those written, or with `fps_out` round(frames x fps_out / fps) (halves up), the
        count that keeps the film's duration (interpolation_frames)."""
        if self.fps_out is None:
            return self.frames_written
        return interpolation_frames(self.frames, self.fps, self.fps_out)

    def command(self) -> list[str]:
        """rawvideo RGB on stdin -> H.264 yuv420p, +faststart (the arguments imageio-ffmpeg's writer uses); with
        `fps_out`, motion-compensated interpolation in the same process (interpolation_filter)."""
        rate = str(Fraction(self.fps).limit_denominator())
        interpolate = [] if self.fps_out is None else [
            "-vf", interpolation_filter(self.fps_out), "-frames:v", str(self.frames_out)]
        return [
            ffmpeg_exe(), "-y", "-f", "rawvideo", "-vcodec", "rawvideo", "-s", f"{self.size[0]}x{self.size[1]}",
            "-pix_fmt", "rgb24", "-r", rate, "-i", "-", "-an", *interpolate, "-vcodec", "libx264", "-pix_fmt",
            "yuv420p", "-v", "error", "-crf", str(self.crf), "-movflags", "+faststart", str(self._tmp),
        ]

    def __enter__(self) -> FrameWriter:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise FilmEncodeError(f"{self.path}: cannot write here ({exc.strerror or exc})") from None
        self._stderr = tempfile.TemporaryFile()  # not a pipe: ffmpeg can never block on a full one
        try:  # its own session: a Ctrl-C reaches us, and we finish or remove the file ourselves
            self._proc = subprocess.Popen(self.command(), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                          stderr=self._stderr, start_new_session=True)
        except OSError as exc:
            self._stderr.close()
            raise FilmEncodeError(f"{self.path}: cannot start ffmpeg ({exc.strerror or exc})") from None
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self._finish(failed=exc_type is not None)
            if exc_type is None:
                if self.frames_written == 0:
                    raise ValueError(f"{self.path}: no frames were written")
                if self.fps_out is not None and self.frames_written != self.frames:
                    raise ValueError(f"{self.path}: {self.frames_written} frames were written but `frames` is "
                                     f"{self.frames}; the interpolated film would be cut at the wrong frame")
                if self.audio is not None:
                    self._mux_audio()
                try:
                    replace_durable(self._tmp, self.path)
                except OSError as err:
                    raise FilmEncodeError(f"{self.path}: cannot write the film ({err.strerror or err})") from None
        finally:
            _remove(self._tmp)

    def _finish(self, failed: bool) -> None:
        """Close ffmpeg's input and wait for it; unless we are already failing, its failure is raised."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            with contextlib.suppress(OSError):  # a broken pipe: ffmpeg has already stopped, and says why below
                proc.stdin.close()
            if failed:  # the film is abandoned: do not wait for ffmpeg to finish it
                proc.kill()
            code = proc.wait()
            if code != 0 and not failed:
                raise FilmEncodeError(f"{self.path}: ffmpeg could not write the film ({self._reason()})")
        finally:
            self._stderr.close()

    def _reason(self) -> str:
        self._stderr.seek(0)
        return ffmpeg_reason(self._stderr.read().decode("utf-8", "replace"), self._tmp, self.path)

    def _fail(self) -> None:
        """ffmpeg stopped reading: wait for it and raise its reason (the film is then removed by __exit__)."""
        proc, self._proc = self._proc, None
        with contextlib.suppress(OSError):
            proc.stdin.close()
        proc.wait()
        reason = self._reason()
        self._stderr.close()
        raise FilmEncodeError(f"{self.path}: ffmpeg could not write the film ({reason})")

    # ----------------------------------------------------------------------------------------- frames

    def write(self, frame: Image.Image | np.ndarray) -> None:
        """Append one frame (a PIL image or an HxWx3 uint8 array) of exactly the film's size."""
        if self._proc is None:
            raise RuntimeError("FrameWriter.write called outside its `with` block")
        if isinstance(frame, Image.Image):
            array = np.asarray(frame.convert("RGB"))
        else:
            array = np.asarray(frame)
            if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
                raise ValueError(f"frame must be an HxWx3 uint8 array but is {array.dtype} {array.shape}.")
        if (array.shape[1], array.shape[0]) != self.size:
            raise ValueError(f"frame is {array.shape[1]}x{array.shape[0]} but the film is {self.size[0]}x{self.size[1]}.")
        if self.fps_out is not None and self.frames_written >= self.frames:
            raise ValueError(f"frame {self.frames_written + 1} is one more than `frames` ({self.frames}).")
        try:
            self._proc.stdin.write(np.ascontiguousarray(array).tobytes())
        except OSError:  # BrokenPipeError and the like: ffmpeg has stopped, and its stderr says why
            self._fail()
        self.frames_written += 1

    def _mux_audio(self) -> None:
        """Second pass: copy the picture, encode the audio cut to the picture's duration (`-t` on the input)."""
        seconds = self.frames_written / self.fps
        muxed = temp_name(self.path, keep_suffix=True)
        cmd = [
            ffmpeg_exe(), "-y", "-loglevel", "error", "-i", str(self._tmp), "-ss", f"{self.audio_start:.6f}",
            "-t", f"{seconds:.6f}", "-i", str(self.audio),
            "-map", "0:v:0", "-map", "1:a:0", *(["-af", self.audio_filter] if self.audio_filter else []),
            "-c:v", "copy", "-c:a", "aac", "-b:a", "192k", "-movflags", "+faststart", str(muxed),
        ]
        try:
            run = subprocess.run(cmd, capture_output=True, text=True)
            if run.returncode != 0:
                raise FilmEncodeError(f"{self.path}: ffmpeg could not mux {self.audio} "
                                      f"({ffmpeg_reason(run.stderr, muxed, self.path)})")
            os.replace(muxed, self._tmp)
        finally:
            _remove(muxed)


# ------------------------------------------------------------------------------------ interpolation

# ffmpeg's minterpolate emits an output frame only once it holds the input frame after it, so the last painted
# frame and the motion towards the film's end would be lost: the input is padded with clones of its last frame
# (tpad) and the output cut at the exact count (-frames:v). mci: motion-compensated; aobmc/bidir/vsbmc: its
# adaptive overlapped blocks, bidirectional search and variable-size blocks (fewer seams than the defaults);
# scene-change detection (scd, on by default) repeats a frame across a cut instead of morphing through it.
INTERPOLATION = "mi_mode=mci:mc_mode=aobmc:me_mode=bidir:vsbmc=1"
TAIL_CLONES = 3


def interpolation_filter(fps_out: int | float) -> str:
    """The ffmpeg filter chain of `fps_out`: pad the tail, then interpolate to fps_out."""
    rate = str(Fraction(fps_out).limit_denominator())
    return f"tpad=stop_mode=clone:stop={TAIL_CLONES},minterpolate=fps={rate}:{INTERPOLATION}"


def interpolation_frames(frames: int, fps: int | float, fps_out: int | float) -> int:
    """Frames of a film of `frames` painted at `fps` and interpolated to `fps_out`: the same duration, rounded
    to the nearest frame, halves up (7 frames at 12 fps -> 17.5 -> 18 at 30 fps). Frame k of the output shows the
    film at k / fps_out seconds; painted frame i lands on output frame i x fps_out / fps when that is whole."""
    exact = Fraction(frames) * Fraction(fps_out).limit_denominator() / Fraction(fps).limit_denominator()
    return int(exact + Fraction(1, 2))


# ------------------------------------------------------------------------------------------ subtitles


def srt_time(seconds: float) -> str:
    ms = max(0, round(seconds * 1000))
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d},{ms:03d}"


def write_srt(cues: list[tuple[float, float, str]], path: Path) -> None:
    """SubRip sidecar: one numbered cue per (start_s, end_s, text); written to a temp name, then renamed (a
    failing write is a UserError naming the file)."""
    blocks = []
    for i, (start, end, text) in enumerate(cues, 1):
        if end < start:
            raise ValueError(f"cue {i} ends ({end}) before it starts ({start}).")
        body = "\n".join(line for line in str(text).strip().splitlines() if line.strip()) or " "
        blocks.append(f"{i}\n{srt_time(start)} --> {srt_time(end)}\n{body}\n")
    try:
        write_durable(Path(path), "\n".join(blocks).encode("utf-8"))
    except OSError as exc:
        raise UserError(f"{path}: cannot write the subtitles ({exc.strerror or exc})") from None


# ---------------------------------------------------------------------------------- titles and cards


def load_font(size: int) -> ImageFont.ImageFont:
    """DejaVu Sans where installed, else Pillow's built-in scalable font (no libass, no system dependency)."""
    for candidate in FONT_PATHS:
        if candidate.is_file():
            return ImageFont.truetype(str(candidate), size)
    return ImageFont.load_default(size=size)


def _wrap(draw: ImageDraw.ImageDraw, text: str, font, max_width: int) -> str:
    """Greedy word wrap to the pixel width (a glyph-width guess first, then tightened)."""
    chars = max(4, int(max_width / max(1.0, font.getlength("n"))))
    while chars > 4:
        wrapped = textwrap.fill(text, width=chars)
        left, _, right, _ = draw.multiline_textbbox((0, 0), wrapped, font=font)
        if right - left <= max_width:
            return wrapped
        chars -= 1
    return textwrap.fill(text, width=chars)


def burn_subtitle(image: Image.Image, text: str) -> Image.Image:
    """A copy of `image` with `text` drawn at the bottom, white with a dark outline, readable on any frame."""
    out = image.convert("RGB").copy()
    if not text.strip():
        return out
    w, h = out.size
    font = load_font(max(8, h // 18))
    draw = ImageDraw.Draw(out)
    wrapped = _wrap(draw, text.strip(), font, int(w * 0.9))
    stroke = max(1, h // 200)
    left, top, right, bottom = draw.multiline_textbbox((0, 0), wrapped, font=font, stroke_width=stroke, align="center")
    x = (w - (right - left)) / 2 - left
    y = h - (bottom - top) - max(2, h // 24) - top
    draw.multiline_text((x, y), wrapped, font=font, fill="white", stroke_width=stroke, stroke_fill="black",
                        align="center")
    return out


def intertitle_card(size: tuple[int, int], text: str) -> Image.Image:
    """A silent-film intertitle: centred pale text on black, with a thin frame line."""
    w, h = size
    card = Image.new("RGB", size, (8, 8, 8))
    draw = ImageDraw.Draw(card)
    margin = max(2, min(w, h) // 16)
    draw.rectangle((margin, margin, w - 1 - margin, h - 1 - margin), outline=(200, 190, 160), width=max(1, h // 160))
    font = load_font(max(8, h // 12))
    wrapped = _wrap(draw, text.strip(), font, int(w - 4 * margin))
    left, top, right, bottom = draw.multiline_textbbox((0, 0), wrapped, font=font, align="center")
    draw.multiline_text(((w - (right - left)) / 2 - left, (h - (bottom - top)) / 2 - top), wrapped, font=font,
                        fill=(235, 225, 200), align="center")
    return card


# --------------------------------------------------------------------------------------- inspection


def probe(path: Path) -> dict:
    """What the bundled ffmpeg says about a film: codec, pixel format, fps, size and the decoded frame count."""
    import imageio_ffmpeg

    run = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True, text=True)
    video = next((line for line in run.stderr.splitlines() if "Video:" in line), "")
    info = {
        "codec": (re.search(r"Video: (\w+)", video) or [None, None])[1],
        "pix_fmt": (re.search(r"Video: \w+[^,]*, (\w+)", video) or [None, None])[1],
        "fps": float((re.search(r"([\d.]+) fps", video) or [None, "nan"])[1]),
        "audio": any("Audio:" in line for line in run.stderr.splitlines()),
        "faststart": None,
    }
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    info["size"] = tuple(meta["size"])
    info["frames"] = sum(1 for _ in reader)
    head = Path(path).read_bytes()[:1 << 16]
    moov, mdat = head.find(b"moov"), head.find(b"mdat")
    info["faststart"] = moov != -1 and (mdat == -1 or moov < mdat)
    return info

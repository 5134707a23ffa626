"""What a new user trips on, for every subcommand but `loop` (tests/test_loop_bad_inputs.py has that one): each
mistake is one `error: ...` line on stderr, exit 2, no traceback, and nothing left behind in the folders it names.

The table runs `zoetrope.cli.main.main(argv)` in this process (fast tier); only what needs a second process
(a port held by another server, stderr redirected to a file by the shell) starts one, marked e2e. The
subcommand list comes from `build_parser`, and a test fails when a subcommand has no case here.
"""

from __future__ import annotations

import argparse
import io
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.gallery_helpers import make_chain
from zoetrope.cli.main import build_parser, main

ROOT = Path(__file__).resolve().parent.parent
SCENE = ROOT / "scenes" / "kubla-khan.yaml"


def subcommands() -> set[str]:
    """Every leaf command of the parser: `serve`, `replay play`, `scene from-screenplay`..."""
    def leaves(parser: argparse.ArgumentParser, prefix: str) -> set[str]:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            return {prefix.strip()}
        return {leaf for name, child in subs[0].choices.items() for leaf in leaves(child, f"{prefix} {name}")}

    return leaves(build_parser(), "")


def tree(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@pytest.fixture
def place(tmp_path):
    """A chain, a film, a file standing where a folder should be, and a read-only folder (None as root)."""
    chain = make_chain(tmp_path / "chain", ["a lighthouse at night", "a garden of glass"])
    film = tmp_path / "film.mp4"
    from zoetrope.film.encode import FrameWriter

    with FrameWriter(film, 4, (16, 16)) as writer:
        for k in range(3):
            writer.write(np.full((16, 16, 3), 40 * k, np.uint8))
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder\n")
    (tmp_path / "empty").mkdir()
    readonly = tmp_path / "read-only"
    readonly.mkdir()
    readonly.chmod(0o555)
    try:
        (readonly / "probe").write_text("")
        (readonly / "probe").unlink()
        readonly = None  # root writes anyway: those cases skip
    except OSError:
        pass
    yield {"chain": chain, "film": film, "file": blocker, "empty": tmp_path / "empty", "ro": readonly,
           "tmp": tmp_path}
    (tmp_path / "read-only").chmod(0o755)


# (case id, argv with {chain} {film} {file} {empty} {ro} {tmp} placeholders, what the error line must contain)
CASES = [
    ("replay play: read-only out", "replay play {chain} --out {ro}/x.mp4", "cannot write here"),
    ("replay play: out under a file", "replay play {chain} --out {file}/x.mp4", "is a file, not a folder"),
    ("replay play: out is a folder", "replay play {chain} --out {empty}", "a film needs one of"),
    ("replay play: not a chain", "replay play {empty}", "not a chain folder"),
    ("replay play: a file for a folder", "replay play {file}", "chain folder"),
    ("replay verify: not a chain", "replay verify {empty} --models tiny", "not a chain folder"),
    ("replay verify: bad --models role", "replay verify {chain} --models bogus=tiny", "--models"),
    ("replay fork: out under a file", "replay fork {chain} --from-step 1 --out {file}/f", "is a file, not a folder"),
    ("replay fork: read-only out", "replay fork {chain} --from-step 1 --out {ro}/f", "cannot write here"),
    ("replay fork: bad --models role", "replay fork {chain} --from-step 1 --models bogus=tiny", "--models"),
    ("replay show: a file for a folder", "replay show {file}", "chain folder"),
    ("replay repair: not a chain", "replay repair {empty}", "not a chain folder"),
    ("inspect: out under a file", "inspect {chain} --out {file}/r.html", "is a file, not a folder"),
    ("inspect: read-only out", "inspect {chain} --out {ro}/r.html", "cannot write here"),
    ("inspect: not a chain", "inspect {empty}", "not a chain folder"),
    ("inspect: bad --models role", "inspect {chain} --models bogus=tiny", "--models"),
    ("serve: not a chain", "serve --chain {empty}", "not a chain folder"),
    ("serve: a file for a folder", "serve --chain {file}", "a file, not a chain folder"),
    ("serve: --latest a file", "serve --latest {file}", "a file, not a folder"),
    ("serve: taken port", "serve --chain {chain} --port {taken}", "already in use"),
    ("install-service: out under a file", "install-service {tmp}/loop.yaml --write --dir {file}/units",
     "is a file, not a folder"),
    ("install-service: bad --models", "install-service {tmp}/loop.yaml --models bogus=tiny", "--models"),
    ("render: out under a file", f"render {SCENE} --models tiny --out {{file}}/x.mp4", "is a file, not a folder"),
    ("render: read-only out", f"render {SCENE} --models tiny --out {{ro}}/x.mp4", "cannot write here"),
    ("render: bad --models role", f"render {SCENE} --models bogus=tiny", "--models"),
    ("render: not a chain", "render --from-chain {empty} --models tiny --out {tmp}/x.mp4", "chain folder"),
    ("check: a folder", "check {empty}", "a folder, not"),
    ("check: missing extra", f"check {SCENE}", "needs scikit-image; install it with .venv/bin/pip install"),
    ("scene: out under a file", "scene from-screenplay scenes/the-keeper.fountain --out {file}/k.yaml",
     "is a file, not a folder"),
    ("scene: not a screenplay", f"scene from-screenplay {SCENE}", "not a screenplay"),
    ("join: out under a file", "join {film} --out {file}/j.mp4", "is a file, not a folder"),
    ("join: read-only out", "join {film} --out {ro}/j.mp4", "cannot write here"),
    ("join: not a film", "join {file} --out {tmp}/j.mp4", "not a film ffmpeg can read"),
    ("join: a folder for a film", "join {empty} --out {tmp}/j.mp4", "film not found"),
    ("models pull: unknown preset", "models pull no-such-preset", "is not a preset"),
]
XFAIL: dict[str, str] = {}  # known and not fixed (strict, so a fix turns them green); none today


NOTHING_TO_GET_WRONG = {"loop": "tests/test_loop_bad_inputs.py", "models list": "takes no arguments"}


def test_every_subcommand_but_loop_has_a_bad_input_case():
    subs = subcommands()
    covered = {" ".join(argv.split()[:2]) if " ".join(argv.split()[:2]) in subs else argv.split()[0]
               for _, argv, _ in CASES}
    assert not subs - covered - set(NOTHING_TO_GET_WRONG), f"no bad-input case for: {sorted(subs - covered)}"


@pytest.mark.parametrize("case, argv, expected", [
    pytest.param(*c, marks=[pytest.mark.xfail(reason=XFAIL[c[0]], strict=True)] if c[0] in XFAIL else [])
    for c in CASES], ids=[c[0] for c in CASES])
def test_a_bad_input_is_one_line_exit_2_and_leaves_nothing(place, capsys, monkeypatch, case, argv, expected):
    if "{ro}" in argv and place["ro"] is None:
        pytest.skip("running as root: a 0o555 folder is writable")
    (place["tmp"] / "loop.yaml").write_text("seed: 1\n")
    if case == "check: missing extra":
        from zoetrope.settings import check

        monkeypatch.setattr(check, "_installed", lambda module: module != "skimage")
    from zoetrope.stages import models

    monkeypatch.setattr(models, "load_painter", lambda *a, **k: pytest.fail("a model loaded before the check"))
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    held.listen(1)
    try:
        words = argv.format(**place, taken=held.getsockname()[1]).split()
        before = tree(place["tmp"])
        capsys.readouterr()
        code = main(words)
        out, err = capsys.readouterr()
    finally:
        held.close()
    assert (code, len(err.splitlines())) == (2, 1), out + err
    assert err.startswith("error: ") and expected in err and "Traceback" not in err + out, err
    assert "display on" not in out  # a server that did not bind never says where it is
    assert tree(place["tmp"]) == before  # nothing half-written, no probe or temp file left


# ------------------------------------------------------------------------------- output and its cleanup


def test_a_cleanup_that_fails_never_hides_the_encoder_error(tmp_path, monkeypatch):
    """On a read-only mount even unlink(missing_ok=True) raises EROFS: the FilmEncodeError must come out."""
    import errno

    from zoetrope.film.encode import FilmEncodeError, FrameWriter

    real_unlink = Path.unlink

    def unlink(self, missing_ok=False):
        if ".partial-" in self.name:
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", unlink)
    writer = FrameWriter(tmp_path / "x.mp4", 4, (16, 16))
    monkeypatch.setattr(writer, "command", lambda: [sys.executable, "-c", "import sys; sys.stderr.write("
                                                    "'Error opening output files: Read-only file system'); sys.exit(1)"])
    with pytest.raises(FilmEncodeError, match="Read-only file system"), writer:
        for _ in range(200):  # until the pipe breaks
            writer.write(np.zeros((16, 16, 3), np.uint8))
    assert not (tmp_path / "x.mp4").exists()


# ------------------------------------------------------------------------------------------- progress


def test_progress_in_a_file_is_plain_lines_every_ten_percent_and_one_at_the_end():
    from zoetrope.cli.progress import Bar

    stream = io.StringIO()
    bar = Bar("encode", 50, stream=stream)
    for _ in range(50):
        bar.update(1)
    bar.close()
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue() and "\x1b" not in stream.getvalue()
    assert lines[:2] == ["encode: 5/50 frames (10 %)", "encode: 10/50 frames (20 %)"] and len(lines) == 10
    assert lines[-1].startswith("encode: 50/50 frames in ")  # done, never left at 94 %


def test_a_count_that_stops_short_says_nothing_more():
    from zoetrope.cli.progress import Bar

    stream = io.StringIO()
    with Bar("walk", 10, stream=stream) as bar:
        bar.update(3)
    assert stream.getvalue().splitlines() == ["walk: 3/10 frames (30 %)"]


def test_replay_play_in_process_writes_no_carriage_return(place, capsys):
    out = place["tmp"] / "play.mp4"
    assert main(["replay", "play", str(place["chain"]), "--out", str(out), "--hold", "0.5", "--crossfade", "0.25", "--fps", "8"]) == 0
    printed, err = capsys.readouterr()
    assert "\r" not in err and "\x1b" not in err and err.splitlines()[-1].startswith("play: 8/8 frames in ")
    assert "8 frames" in printed and out.is_file()


@pytest.mark.e2e
def test_render_and_replay_play_into_a_file_leave_no_cursor_codes(place):
    env = os.environ | {"HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    runs = [["replay", "play", str(place["chain"]), "--out", str(place["tmp"] / "p.mp4")],
            ["render", str(SCENE), "--models", "tiny", "--preview", "--out", str(place["tmp"] / "k.mp4"),
             "--cache-root", str(place["tmp"] / "cache")]]
    for argv in runs:
        log = place["tmp"] / "stderr.log"
        with open(log, "w") as err:
            run = subprocess.run([sys.executable, str(ROOT / "run_loop.py"), *argv], stdout=subprocess.PIPE,
                                 stderr=err, text=True, env=env, cwd=ROOT, timeout=300)
        text = log.read_text()
        assert run.returncode == 0, text[-2000:]
        assert "\r" not in text and "\x1b" not in text, text[-2000:]
        for what in {line.split(":")[0] for line in text.splitlines() if "/" in line and " frames" in line}:
            last = [line for line in text.splitlines() if line.startswith(f"{what}: ")][-1]
            assert " frames in " in last, last  # every count ends done, none at 94 %


@pytest.mark.e2e
def test_serve_on_a_taken_port_never_announces_and_exits_2(place):
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    held.listen(1)
    try:
        run = subprocess.run([sys.executable, str(ROOT / "run_loop.py"), "serve", "--chain", str(place["chain"]),
                              "--port", str(held.getsockname()[1])], capture_output=True, text=True, cwd=ROOT,
                             timeout=60)
    finally:
        held.close()
    assert run.returncode == 2 and run.stdout == "" and len(run.stderr.splitlines()) == 1, run.stderr
    assert "already in use" in run.stderr and "Traceback" not in run.stderr

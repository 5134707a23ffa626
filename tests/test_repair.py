"""`replay repair`: the longest consistent history of a damaged log, nothing lost, nothing changed when healthy.

The damage is made as it happened: lines a second writer appended to the same log (exact duplicates, and
other versions of a step whose image was overwritten), a torn last line, garbled lines."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from tests.gallery_helpers import held_elsewhere
from zoetrope.base.files import sha256_bytes
from zoetrope.cli.main import main
from zoetrope.loop.chainlog import (
    LOCK_NAME,
    LOG_NAME,
    REJECTED_NAME,
    SCHEMA_VERSION,
    ChainLogError,
    ChainWriter,
    encode_png,
    read_chain,
    read_header,
    repair_chain,
    repair_lines,
    step_image_name,
)

HEADER = {"kind": "header", "schema_version": SCHEMA_VERSION, "run_id": "r", "created": "t", "config": {},
          "models": {"painter": {"id": "model-x", "revision": None}}, "parent": None}


def record(n: int, previous: dict | None, **changes) -> dict:
    return {"kind": "step", "step": n, "input_image": previous["image"] if previous else None,
            "input_sha256": previous["image_sha256"] if previous else None, "caption": f"caption {n}",
            "caption_params": {}, "prompt": f"prompt {n}", "negative_prompt": "", "seed": n,
            "paint_params": {"steps": 1, "guidance": 0.0, "width": 8, "height": 8, "scheduler": "euler",
                             "strength": None},
            "attempt": 0, "recaptioned": False, "appended_word": None,
            "image": step_image_name(n), "image_sha256": None, "seconds": {"total": 0.1}, "energy_j": None,
            "events": []} | changes


def image(value: int) -> Image.Image:
    return Image.fromarray(np.full((8, 8, 3), value, np.uint8))


def write_chain(folder, steps: int) -> list[dict]:
    """A healthy chain whose steps name their input image and its hash, as the loop writes them."""
    writer = ChainWriter.create(folder, HEADER, None)
    committed: list[dict] = []
    for n in range(1, steps + 1):
        committed.append(writer.commit(record(n, committed[-1] if committed else None), image(10 * n)))
    writer.close()
    return committed


def other_version(n: int, previous: dict, value: int) -> tuple[dict, bytes]:
    """Step n as a second writer painted it differently: its line and its PNG's bytes."""
    rec = record(n, previous, caption=f"another caption {n}")
    png = encode_png(image(value), rec, {"id": "model-x"})
    return rec | {"image_sha256": sha256_bytes(png)}, png


def line(rec: dict) -> bytes:
    return (json.dumps(rec, ensure_ascii=False) + "\n").encode()


def log_lines(folder) -> list[bytes]:
    return (folder / LOG_NAME).read_bytes().splitlines(keepends=True)


def listing(folder) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def test_a_healthy_log_is_left_as_it_is(tmp_path):
    folder = tmp_path / "c"
    write_chain(folder, 4)
    before = listing(folder)
    report = repair_chain(folder)
    assert not report.changed and report.steps == 4
    assert repair_lines(report) == [f"{folder}: the log is healthy (4 steps); nothing to repair, nothing changed"]
    assert listing(folder) == before  # no backup, no rejected file, no lock file


def test_duplicated_and_interleaved_lines_of_two_writers(tmp_path):
    """Both resumed after step 3: the same steps 4 and 5 (same images), then different step 6s, and the
    file on disk is the first writer's."""
    folder = tmp_path / "c"
    steps = write_chain(folder, 6)
    original = log_lines(folder)
    again = [line(s | {"seconds": {"total": 9.9}}) for s in steps[3:5]]  # the second writer's equal steps
    b6, _ = other_version(6, steps[4], 250)
    damaged = [*original[:5], again[0], original[5], again[1], line(b6), original[6]]
    (folder / LOG_NAME).write_bytes(b"".join(damaged))
    with pytest.raises(ChainLogError, match=(
            rf":6: expected step 5, got kind='step' step=4; run `replay repair {folder}` to keep the longest "
            "consistent history")):
        read_chain(folder)

    report = repair_chain(folder)
    assert report.steps == 6 and report.duplicates == [6, 8] and [r.line for r in report.rejected] == [9]
    assert "another version of the step (line 10 kept" in report.rejected[0].reason
    assert log_lines(folder) == original  # the kept lines keep their bytes
    assert read_chain(folder).steps == steps
    assert (folder / REJECTED_NAME).read_bytes() == line(b6)
    assert report.backup.name.startswith(f"{LOG_NAME}.bak-") and report.backup.read_bytes() == b"".join(damaged)
    assert not (folder / LOCK_NAME).exists()
    text = "\n".join(repair_lines(report))
    assert f"{folder}: kept 6 steps, dropped 2 duplicates, rejected 1 line (appended to {folder / REJECTED_NAME})" \
        in text
    assert f"the old log is kept as {report.backup}" in text and f"`loop --resume {folder}`" in text


def test_the_history_follows_the_image_that_survived_and_stops_where_it_breaks(tmp_path):
    """The second writer's step 5 overwrote the first's image; the first's step 6 was painted from the
    first's step 5, so it cannot follow: the history ends at step 5, and image 6 is set aside."""
    folder = tmp_path / "c"
    steps = write_chain(folder, 6)
    original = log_lines(folder)
    b5, png = other_version(5, steps[3], 200)
    (folder / step_image_name(5)).write_bytes(png)
    (folder / LOG_NAME).write_bytes(b"".join([*original[:6], line(b5), original[6]]))
    report = repair_chain(folder)
    assert report.steps == 5 and report.duplicates == []
    assert [(r.line, r.reason.split(":")[0]) for r in report.rejected] == [(6, "step 5"), (8, "step 6")]
    assert "its input is not the image of the step before" in report.rejected[1].reason
    chain = read_chain(folder)
    assert chain.steps[-1] == b5 and chain.steps[:4] == steps[:4]
    assert report.moved_images == [step_image_name(6)] and (folder / "rejected" / step_image_name(6)).is_file()
    assert not (folder / step_image_name(6)).exists()
    assert (folder / REJECTED_NAME).read_bytes() == original[5] + original[6]


def test_a_torn_tail_and_garbled_lines(tmp_path):
    folder = tmp_path / "c"
    steps = write_chain(folder, 5)
    original = log_lines(folder)
    (folder / step_image_name(6)).write_bytes(b"the image of a step whose line was torn")
    damaged = [*original[:3], b"\x00\x00garbage\n", b"[1, 2]\n", *original[3:], b'{"kind": "step", "st']
    (folder / LOG_NAME).write_bytes(b"".join(damaged))
    with pytest.raises(ChainLogError, match=rf":4: garbled record .*; run `replay repair {folder}`"):
        read_chain(folder)
    report = repair_chain(folder)
    assert report.steps == 5 and [r.line for r in report.rejected] == [4, 5, 9]
    assert [r.reason.split(" (")[0] for r in report.rejected] == ["garbled record", "garbled record",
                                                                 "a torn last line"]
    assert read_chain(folder).steps == steps and read_chain(folder).warnings == []
    assert (folder / REJECTED_NAME).read_bytes() == b'\x00\x00garbage\n[1, 2]\n{"kind": "step", "st\n'
    assert report.moved_images == [step_image_name(6)]


def test_a_garbled_step_line_ends_the_history_before_it(tmp_path):
    folder = tmp_path / "c"
    write_chain(folder, 5)
    original = log_lines(folder)
    (folder / LOG_NAME).write_bytes(b"".join([*original[:3], b'{"kind": "step", "step": 3, "capt\n', *original[4:]]))
    report = repair_chain(folder)
    assert report.steps == 2 and [r.line for r in report.rejected] == [4, 5, 6]
    assert "after the history ends at step 2" in report.rejected[-1].reason
    assert read_chain(folder).last_step == 2
    assert sorted(report.moved_images) == [step_image_name(n) for n in (3, 4, 5)]


def test_rejected_lines_are_appended_never_replaced(tmp_path):
    folder = tmp_path / "c"
    write_chain(folder, 2)
    for junk in (b"first junk\n", b"second junk\n"):
        with open(folder / LOG_NAME, "ab") as f:
            f.write(junk)
        repair_chain(folder)
    assert (folder / REJECTED_NAME).read_bytes() == b"first junk\nsecond junk\n"
    assert len(list(folder.glob(f"{LOG_NAME}.bak-*"))) == 2  # two repairs in one second: two backups


def test_repair_refuses_while_a_writer_holds_the_lock(tmp_path, capsys):
    folder = tmp_path / "c"
    write_chain(folder, 2)
    with open(folder / LOG_NAME, "ab") as f:
        f.write(b"junk\n")
    before = listing(folder)
    with held_elsewhere(folder, pid=5150):
        with pytest.raises(ChainLogError, match=rf"^{folder}: another process \(pid 5150\) is writing this chain; "
                                                "stop it before repairing$"):
            repair_chain(folder)
        assert main(["replay", "repair", str(folder)]) == 2
        assert capsys.readouterr().err.strip().endswith("is writing this chain; stop it before repairing")
        assert read_header(folder)["run_id"] == "r"  # a reader does not need the lock
    assert {name: data for name, data in listing(folder).items() if name != LOCK_NAME} == before


def test_a_damaged_header_cannot_be_repaired(tmp_path):
    folder = tmp_path / "c"
    write_chain(folder, 2)
    lines = log_lines(folder)
    (folder / LOG_NAME).write_bytes(b"{garbled\n" + b"".join(lines[1:]))
    with pytest.raises(ChainLogError, match=r":1: the header line is damaged"):
        repair_chain(folder)
    assert not list(folder.glob(f"{LOG_NAME}.*"))


def test_the_cli_prints_what_it_did(tmp_path, capsys):
    folder = tmp_path / "c"
    write_chain(folder, 3)
    with open(folder / LOG_NAME, "ab") as f:
        f.write(b"junk\n")
    assert main(["replay", "repair", str(folder)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{folder / LOG_NAME}:5: rejected: garbled record (Expecting value: line 1 column 1 (char 0))"
    assert out[1].startswith(f"{folder}: kept 3 steps, dropped 0 duplicates, rejected 1 line")
    assert out[-1] == f"continue the chain with `loop --resume {folder}`"
    assert main(["replay", "repair", str(folder)]) == 0
    assert capsys.readouterr().out.strip() == f"{folder}: the log is healthy (3 steps); nothing to repair, nothing changed"

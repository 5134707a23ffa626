"""Verify, fork and lineage on a real 6-step chain of the tiny models (64 px), through the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from zoetrope.base.errors import UserError
from zoetrope.base.files import sha256_file
from zoetrope.cli.main import main
from zoetrope.loop.chainlog import LOG_NAME, read_chain, step_image_name
from zoetrope.settings.loop import LoopConfig

SMALL = {"seed": 5, "steps": 6, "paint": {"width": 64, "height": 64}, "models": {"painter": "tiny", "captioner": "tiny"},
         "guard": {"threshold": 0.3}}  # a low threshold: the guard fires within six random-word captions


def make_chain(folder: Path, painter, captioner, plan, **changes) -> Path:
    """Run a chain in-process with the session's tiny models (what `loop --models tiny` writes)."""
    from zoetrope.loop.run import StopFlag, drive, start_run

    config = LoopConfig.model_validate(SMALL | changes)
    writer, point = start_run(folder, config, None, painter, captioner, plan)
    drive(config, painter, captioner, writer, point, StopFlag())
    return folder


_BUILT: dict[str, Path] = {}


@pytest.fixture(scope="session")
def chain6(tmp_path_factory, tiny_painter, tiny_captioner, cpu) -> Path:
    """Built once per test process, also when another test module re-exports this fixture."""
    if "c6" not in _BUILT:
        _BUILT["c6"] = make_chain(tmp_path_factory.mktemp("chains") / "c6", tiny_painter, tiny_captioner, cpu)
    return _BUILT["c6"]


@pytest.fixture
def copy6(chain6, tmp_path) -> Path:
    """A copy in another folder: also proves a moved chain replays (paths are relative to its folder)."""
    return Path(shutil.copytree(chain6, tmp_path / "moved" / "c6"))


def snapshot(folder: Path) -> dict:
    return {p.name: (p.stat().st_mtime_ns, sha256_file(p)) for p in sorted(folder.iterdir())}


def table_rows(out: str) -> dict[int, str]:
    """verify's per-step table: {step: row}."""
    rows = [line.split(None, 2) for line in out.splitlines()]
    return {int(r[0]): " ".join(r) for r in rows if len(r) == 3 and r[0].isdigit() and r[1].startswith("step-")}


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_the_fixture_chain_fired_the_guard(chain6):
    chain = read_chain(chain6)
    assert chain.last_step == 6
    assert any(e["kind"] == "repetition_guard" for s in chain.steps for e in s["events"])


# ------------------------------------------------------------------------------------------- verify


def test_verify_a_copied_chain_reproduces_byte_for_byte_and_writes_nothing(copy6, capsys):
    before = snapshot(copy6)
    code, out, err = run_cli(capsys, "replay", "verify", copy6)
    assert code == 0, out + err
    assert "expecting identical bytes" in out
    assert "all 6 steps reproduce" in out
    rows = table_rows(out)
    assert sorted(rows) == [1, 2, 3, 4, 5, 6] and all(row.endswith(" ok") for row in rows.values())
    assert snapshot(copy6) == before  # same files, same bytes, same mtimes


def test_verify_names_an_overwritten_a_missing_and_a_reencoded_image(copy6, capsys):
    Image.new("RGB", (64, 64), (255, 0, 0)).save(copy6 / step_image_name(3))  # overwritten
    (copy6 / step_image_name(5)).unlink()  # deleted
    with Image.open(copy6 / step_image_name(2)) as im:  # re-saved by another tool: same pixels, no chunks
        im.convert("RGB").save(copy6 / step_image_name(2), optimize=True)
    code, out, err = run_cli(capsys, "replay", "verify", copy6)
    assert code == 1, out + err
    assert "step 3: step-000003.png is edited" in out
    assert "step 5: step-000005.png is missing" in out
    assert "step 2: step-000002.png is edited" in out
    assert "re-encoded, provenance lost" in out  # its pixels still match the regeneration
    assert "3 of 6 steps do not reproduce: 2, 3, 5" in out
    rows = table_rows(out)
    assert "FAIL" in rows[3] and "FAIL" in rows[5]
    # Steps after a bad image still verify, from the regenerated input.
    assert "FAIL" not in rows[4] and "FAIL" not in rows[6] and "used the regenerated image" in rows[6]


def test_verify_uses_a_tolerance_when_the_environment_differs(copy6, tiny_painter, tiny_captioner, cpu):
    from zoetrope.curate.verify import verify_chain
    from zoetrope.loop.run import library_versions

    chain = read_chain(copy6)
    chain.header["device"] = "cuda"
    chain.header["versions"]["torch"] = "0.0-other"
    report = verify_chain(chain, tiny_painter, tiny_captioner, cpu, library_versions())
    assert report.environment == ["device cuda -> cpu", "torch 0.0-other -> " + library_versions()["torch"]]
    assert report.ok and all(s.psnr == float("inf") and s.max_diff == 0 for s in report.steps)
    # A different picture is judged by PSNR, not by bytes: one repainted step falls below the tolerance.
    chain.steps[2]["seed"] += 1
    report = verify_chain(chain, tiny_painter, tiny_captioner, cpu, library_versions())
    bad = [s.step for s in report.steps if not s.reproduces]
    assert 3 in bad and report.steps[2].psnr < 40 and report.steps[2].max_diff > 0


def test_verify_reports_model_revision_mismatch(copy6, tiny_painter, tiny_captioner, cpu):
    from zoetrope.curate.verify import verify_chain
    from zoetrope.loop.run import library_versions

    chain = read_chain(copy6)
    chain.header["models"]["painter"]["revision"] = "abc123"
    report = verify_chain(chain, tiny_painter, tiny_captioner, cpu, library_versions())
    assert report.revisions == ["painter revision: logged 'abc123', loaded 'tiny-v1'"]
    assert not report.ok


def test_pixel_stats():
    from zoetrope.curate.replay import pixel_stats

    a = Image.new("RGB", (8, 8), (10, 10, 10))
    b = a.copy()
    b.putpixel((0, 0), (20, 10, 10))
    assert pixel_stats(a, a) == (0, float("inf"))
    diff, psnr = pixel_stats(a, b)
    assert diff == 10 and psnr == pytest.approx(10 * __import__("math").log10(255**2 / (100 / 192)))


# ------------------------------------------------------------------------------------------- bad input


def write_log(folder: Path, lines: list[bytes]) -> None:
    (folder / LOG_NAME).write_bytes(b"".join(lines))


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_missing_folder_is_one_line_exit_2(tmp_path, capsys):
    for argv in (("replay", "verify"), ("replay", "show"), ("replay", "play"), ("inspect",)):
        code, _, err = run_cli(capsys, *argv, tmp_path / "nope")
        assert code == 2
        assert one_error_line(err) == f"error: {tmp_path / 'nope'}: no such chain folder"


def test_garbled_middle_line_and_future_schema_are_one_line_exit_2(copy6, capsys):
    lines = (copy6 / LOG_NAME).read_bytes().splitlines(keepends=True)
    write_log(copy6, [lines[0], lines[1], b'{"kind": "step", "st\n', *lines[3:]])
    code, _, err = run_cli(capsys, "replay", "verify", copy6)
    assert code == 2 and f"{copy6 / LOG_NAME}:3: garbled record" in one_error_line(err)

    header = json.loads(lines[0]) | {"schema_version": 99}
    write_log(copy6, [json.dumps(header).encode() + b"\n", *lines[1:]])
    code, _, err = run_cli(capsys, "replay", "verify", copy6)
    assert code == 2 and "schema_version 99 is newer than this Zoetrope reads" in one_error_line(err)


def test_torn_last_line_is_dropped_with_a_warning(copy6, capsys, caplog):
    lines = (copy6 / LOG_NAME).read_bytes().splitlines(keepends=True)
    write_log(copy6, [*lines[:-1], lines[-1][:40]])
    code, out, err = run_cli(capsys, "replay", "show", copy6)
    assert code == 0 and "(5 steps)" in out
    assert "dropped a torn last line" in caplog.text


# ------------------------------------------------------------------------------------------- fork + show


def test_fork_from_step_3_records_its_parent_and_show_lists_both(copy6, capsys):
    family = copy6.parent
    code, out, err = run_cli(capsys, "replay", "fork", copy6, "--from-step", 3, "--steps", 2, "--suffix", ", etching",
                             "--seed", 9, "--mode", "drift", "--strength", 1.0)
    assert code == 0, out + err
    forks = [p for p in family.iterdir() if p.name.startswith("c6-fork3-")]
    assert len(forks) == 1
    fork = read_chain(forks[0])
    assert fork.header["parent"] == {"run": "c6", "step": 3, "folder": "../c6"}
    assert fork.header["config"]["seed"] == 9 and fork.header["config"]["paint"]["mode"] == "drift"
    assert fork.last_step == 2 and fork.steps[0]["prompt"].endswith(", etching")
    assert fork.steps[0]["input_image"] == "start.png" and fork.steps[0]["paint_params"]["strength"] == 1.0
    with Image.open(copy6 / step_image_name(3)) as a, Image.open(forks[0] / "start.png") as b:
        assert a.tobytes() == b.tobytes()  # the fork begins from step 3's pixels

    code, out, _ = run_cli(capsys, "replay", "show", forks[0])
    assert code == 0
    assert out.splitlines()[1].split()[0] == "c6" and f"step 3 -> {forks[0].name}" in out and "<- this chain" in out
    code, out, _ = run_cli(capsys, "replay", "show", copy6)
    assert "forks of this chain found next to it:" in out and f"step 3 -> {forks[0].name}" in out

    # The fork itself verifies, and moving the family elsewhere keeps the lineage.
    moved = Path(shutil.move(str(family), str(family.parent / "elsewhere")))
    code, out, _ = run_cli(capsys, "replay", "show", moved / forks[0].name)
    assert "not found" not in out and f"{moved / 'c6'}" in out


def test_show_says_when_the_parent_is_not_found(copy6, tmp_path, capsys):
    header, *rest = (copy6 / LOG_NAME).read_bytes().splitlines(keepends=True)
    data = json.loads(header) | {"parent": {"run": "gone", "step": 2, "folder": "../gone"}}
    write_log(copy6, [json.dumps(data).encode() + b"\n", *rest])
    code, out, _ = run_cli(capsys, "replay", "show", copy6)
    assert code == 0 and "gone  (not found next to this chain)" in out


def test_fork_rejects_bad_options_before_writing(copy6, capsys):
    cases = [
        (("--from-step", 9), "error: --from-step must be between 1 and 6 but is 9"),
        (("--from-step", 2, "--strength", 3), "error: fork: paint.strength: Input should be less than or equal to 1 (got 3.0)"),
        (("--from-step", 2, "--template", "no caption"), "error: fork: prompt.template: must contain {caption} (got 'no caption')"),
        (("--from-step", 2, "--mode", "drift", "--strength", 0.5),
         "error: fork: paint: drift mode denoises int(steps x strength) steps, and 1 x 0.5 gives none: "
         "raise steps to at least 2 or strength"),
    ]
    for extra, message in cases:
        code, _, err = run_cli(capsys, "replay", "fork", copy6, *extra, "--out", copy6.parent / "f")
        assert code == 2 and one_error_line(err) == message
    (copy6 / step_image_name(2)).unlink()
    code, _, err = run_cli(capsys, "replay", "fork", copy6, "--from-step", 2, "--out", copy6.parent / "f")
    assert code == 2 and "the image of step 2 is missing; cannot fork from it" in one_error_line(err)
    assert not (copy6.parent / "f").exists()


def test_fork_config_is_validated_through_loop_config(copy6):
    from zoetrope.curate.fork import fork_config

    config = fork_config(read_chain(copy6), 4, {"models.painter": "sd-turbo", "seed": 3})
    assert config.models.painter == "sd-turbo" and config.models.painter_revision is None
    assert config.start.image.endswith(step_image_name(4)) and config.start.prompt is None
    with pytest.raises(UserError, match="seed"):
        fork_config(read_chain(copy6), 4, {"seed": -1})


def test_fork_paint_steps_sets_the_painters_steps_of_the_fork(copy6, capsys):
    out = copy6.parent / "f"
    # Drift at strength 0.5 denoises no step at the parent's 1 paint step; at 2 it does: validated as a whole.
    code, text, err = run_cli(capsys, "replay", "fork", copy6, "--from-step", 2, "--steps", 1, "--mode", "drift",
                              "--strength", 0.5, "--paint-steps", 2, "--out", out)
    assert code == 0, text + err
    assert f"fork {out} of c6 at step 2" in text and "2 paint steps" in text
    fork = read_chain(out)
    assert fork.header["config"]["paint"]["steps"] == 2 and fork.header["config"]["steps"] == 1
    assert fork.last_step == 1 and fork.steps[0]["paint_params"]["steps"] == 2
    assert read_chain(copy6).header["config"]["paint"]["steps"] == 1  # the parent is untouched


@pytest.mark.parametrize("value, message", [
    (0, "error: fork: paint.steps: Input should be greater than or equal to 1 (got 0)"),
    (151, "error: fork: paint.steps: Input should be less than or equal to 150 (got 151)"),
])
def test_fork_rejects_bad_paint_steps_before_writing(copy6, capsys, value, message):
    code, _, err = run_cli(capsys, "replay", "fork", copy6, "--from-step", 2, "--paint-steps", value,
                           "--out", copy6.parent / "f")
    assert code == 2 and one_error_line(err) == message
    assert not (copy6.parent / "f").exists()


def test_fork_config_takes_paint_steps_and_refuses_unknown_fields(copy6):
    from zoetrope.curate.fork import fork_config

    assert fork_config(read_chain(copy6), 2, {"paint.steps": 3, "steps": None}).paint.steps == 3
    with pytest.raises(ValueError, match="paint.stepz"):
        fork_config(read_chain(copy6), 2, {"paint.stepz": 3})


def test_verify_rejects_a_tolerance_that_is_not_positive(copy6, capsys):
    code, _, err = run_cli(capsys, "replay", "verify", copy6, "--min-psnr", 0)
    assert code == 2 and one_error_line(err) == "error: --min-psnr: must be greater than 0 dB (got 0.0)"


# ----------------------------------------------------------------------------------------------- repair


def test_a_log_two_writers_appended_to_is_repaired_and_verifies(copy6, capsys):
    """What the old double writer left: a second `loop --resume` from step 3 appended its own steps 4-6
    between the first's (the same pictures: exact duplicates but for the timings), one of them a different
    step 6 whose picture lost the race for the file, and a torn last line."""
    lines = (copy6 / LOG_NAME).read_bytes().splitlines(keepends=True)
    second = [json.dumps(json.loads(raw) | {"seconds": {"total": 9.9}}, ensure_ascii=False).encode() + b"\n"
              for raw in lines[4:7]]
    other6 = json.loads(lines[6]) | {"caption": "another caption", "image_sha256": "0" * 64}
    other6_line = json.dumps(other6, ensure_ascii=False).encode() + b"\n"
    damaged = [*lines[:5], second[0], lines[5], second[1], other6_line, lines[6], second[2], b'{"kind": "step", "st']
    write_log(copy6, damaged)
    code, _, err = run_cli(capsys, "replay", "verify", copy6)
    assert code == 2 and one_error_line(err).endswith(
        f"expected step 5, got kind='step' step=4; run `replay repair {copy6}` to keep the longest consistent history")

    code, out, _ = run_cli(capsys, "replay", "repair", copy6)
    assert code == 0
    assert f"{copy6}: kept 6 steps, dropped 3 duplicates, rejected 2 lines (appended to {copy6 / LOG_NAME}.rejected)" \
        in out
    assert f"continue the chain with `loop --resume {copy6}`" in out
    assert (copy6 / f"{LOG_NAME}.rejected").read_bytes() == other6_line + b'{"kind": "step", "st\n'
    backups = list(copy6.glob(f"{LOG_NAME}.bak-*"))
    assert len(backups) == 1 and backups[0].read_bytes() == b"".join(damaged)
    assert (copy6 / LOG_NAME).read_bytes() == b"".join(lines)
    code, out, _ = run_cli(capsys, "replay", "verify", copy6)
    assert code == 0, out
    code, out, _ = run_cli(capsys, "replay", "repair", copy6)
    assert code == 0 and out.strip() == f"{copy6}: the log is healthy (6 steps); nothing to repair, nothing changed"

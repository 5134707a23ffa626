"""Chain log round trip: durable writes, torn last lines, garbled lines, schema versions, PNG provenance."""

import json

import numpy as np
import pytest
from PIL import Image

from zoetrope.base.files import sha256_file
from zoetrope.loop.chainlog import (
    SCHEMA_VERSION,
    ChainLogError,
    ChainWriter,
    encode_png,
    read_chain,
    step_image_name,
)


def header(**changes):
    return {"kind": "header", "schema_version": SCHEMA_VERSION, "run_id": "r", "created": "t", "config": {},
            "models": {"painter": {"id": "model-x", "revision": None}}, "parent": None} | changes


def record(n: int, **changes):
    return {"kind": "step", "step": n, "input_image": None, "input_sha256": None, "caption": f"caption {n}",
            "caption_params": {}, "prompt": f"prompt {n} שלום 猫", "negative_prompt": "blur", "seed": n,
            "paint_params": {"steps": 1, "guidance": 0.0, "width": 8, "height": 8, "scheduler": "euler",
                             "strength": None},
            "attempt": 0, "recaptioned": False, "appended_word": None,
            "image": step_image_name(n), "image_sha256": None, "seconds": {"total": 0.1}, "energy_j": None,
            "events": []} | changes


def image(value: int) -> Image.Image:
    return Image.fromarray(np.full((8, 8, 3), value, np.uint8))


def write_chain(folder, steps: int):
    writer = ChainWriter.create(folder, header(), None)
    committed = [writer.commit(record(n), image(n)) for n in range(1, steps + 1)]
    writer.close()
    return committed


def test_round_trip_hashes_and_provenance(tmp_path):
    committed = write_chain(tmp_path / "c", 3)
    chain = read_chain(tmp_path / "c")
    assert chain.header["run_id"] == "r" and [s["step"] for s in chain.steps] == [1, 2, 3]
    assert chain.steps == committed and chain.warnings == []
    for step in chain.steps:
        path = chain.folder / step["image"]
        assert sha256_file(path) == step["image_sha256"]
        with Image.open(path) as png:
            assert png.text["parameters"].startswith(f"prompt {step['step']} שלום 猫\nNegative prompt: blur\n")
            assert f"Seed: {step['seed']}, Size: 8x8, Model: model-x" in png.text["parameters"]
            embedded = json.loads(png.text["zoetrope"])
        assert embedded["caption"] == step["caption"] and "image_sha256" not in embedded and "seconds" not in embedded
    assert not list(chain.folder.glob(".*tmp"))


def test_png_bytes_do_not_depend_on_timings():
    a = encode_png(image(5), record(1, seconds={"total": 1.0}), {"id": "m"})
    b = encode_png(image(5), record(1, seconds={"total": 9.0}), {"id": "m"})
    assert a == b


def test_torn_last_line_is_dropped_with_a_warning_and_cut_on_resume(tmp_path):
    folder = tmp_path / "c"
    write_chain(folder, 2)
    log = folder / "chain.jsonl"
    with open(log, "ab") as f:
        f.write(b'{"kind": "step", "step": 3, "capt')
    chain = read_chain(folder)
    assert chain.last_step == 2 and "torn last line" in chain.warnings[0]
    (folder / step_image_name(3)).write_bytes(b"half")  # renamed image whose log line never landed
    (folder / ".step-000004.png.tmp").write_bytes(b"temp")
    writer = ChainWriter.reopen(chain)
    writer.commit(record(3), image(3))
    writer.close()
    again = read_chain(folder)
    assert [s["step"] for s in again.steps] == [1, 2, 3] and again.warnings == []
    assert sha256_file(folder / step_image_name(3)) == again.steps[-1]["image_sha256"]
    assert not (folder / ".step-000004.png.tmp").exists()


def test_garbled_middle_line_is_an_error_naming_the_line(tmp_path):
    folder = tmp_path / "c"
    write_chain(folder, 3)
    log = folder / "chain.jsonl"
    lines = log.read_bytes().split(b"\n")
    lines[2] = b"{not json"
    log.write_bytes(b"\n".join(lines))
    with pytest.raises(ChainLogError, match=r"chain.jsonl:3: garbled record .*; run `replay repair "
                                            rf"{folder}` to keep the longest consistent history$"):
        read_chain(folder)


def test_missing_step_number_is_an_error(tmp_path):
    folder = tmp_path / "c"
    write_chain(folder, 3)
    log = folder / "chain.jsonl"
    lines = log.read_text().splitlines()
    del lines[2]
    log.write_text("\n".join(lines) + "\n")
    with pytest.raises(ChainLogError, match=r":3: expected step 2, got kind='step' step=3; run `replay repair "
                                            rf"{folder}` to keep the longest consistent history$"):
        read_chain(folder)


def test_a_garbled_header_names_no_repair(tmp_path):
    folder = tmp_path / "c"
    write_chain(folder, 1)
    log = folder / "chain.jsonl"
    log.write_bytes(b"{garbled\n" + log.read_bytes().split(b"\n", 1)[1])
    with pytest.raises(ChainLogError, match=r"chain.jsonl:1: garbled record \(") as caught:
        read_chain(folder)
    assert "replay repair" not in str(caught.value)  # repair keeps a history only after a readable header


def test_a_log_replaced_under_a_tail_is_read_again_from_the_top(tmp_path):
    from zoetrope.loop.chainlog import LogTail

    folder = tmp_path / "c"
    write_chain(folder, 2)
    tail = LogTail(folder)
    assert tail.read().steps == 2
    log = folder / "chain.jsonl"
    data = log.read_bytes()
    log.unlink()
    log.write_bytes(data + data.split(b"\n", 1)[1])  # another file, longer than the first: not a tail of it
    again = tail.read()
    assert again.restarted and again.first and again.steps == 4


def test_future_schema_version_is_refused(tmp_path):
    folder = tmp_path / "c"
    ChainWriter.create(folder, header(schema_version=9), None).close()
    with pytest.raises(ChainLogError, match="schema_version 9 is newer than this Zoetrope reads"):
        read_chain(folder)


@pytest.mark.parametrize("setup, message", [
    (lambda f: None, "no such chain folder"),
    (lambda f: f.mkdir(), "not a chain folder"),
    (lambda f: (f.mkdir(), (f / "chain.jsonl").write_text("")), "empty log"),
    (lambda f: (f.mkdir(), (f / "chain.jsonl").write_text('{"kind": "step"}\n')), "first line is not a header"),
])
def test_bad_chain_folders(tmp_path, setup, message):
    folder = tmp_path / "c"
    setup(folder)
    with pytest.raises(ChainLogError, match=message):
        read_chain(folder)


def test_create_refuses_an_existing_chain(tmp_path):
    write_chain(tmp_path / "c", 1)
    with pytest.raises(ChainLogError, match="already holds a chain"):
        ChainWriter.create(tmp_path / "c", header(), None)


def test_read_header_reads_only_the_first_line(tmp_path):
    from zoetrope.loop.chainlog import read_header

    folder = tmp_path / "c"
    folder.mkdir()
    (folder / "chain.jsonl").write_text('{"kind": "header", "schema_version": 1, "config": {"seed": 4}}\n{garbled\n')
    assert read_header(folder)["config"] == {"seed": 4}  # the steps are not parsed
    (folder / "chain.jsonl").write_text('{"kind": "step", "step": 1}\n')
    with pytest.raises(ChainLogError, match="first line is not a header"):
        read_header(folder)
    (folder / "chain.jsonl").write_text('{"kind": "header"')
    with pytest.raises(ChainLogError, match="no header line"):
        read_header(folder)


def test_prompts_cannot_break_the_infotext_and_readers_get_the_model_hash(tmp_path):
    """sd-parsers (what image tools use) reads prompt, negative prompt, seed and model hash from a step PNG
    whose prompt held newlines and A1111's own keywords; the `zoetrope` chunk keeps the exact text."""
    from sd_parsers import ParserManager

    nasty = "a cat\nNegative prompt: dogs\nSteps: 99"
    folder = tmp_path / "c"
    writer = ChainWriter.create(folder, header(models={"painter": {"id": "m", "revision": None, "hash": "0123abcdef"}}),
                                None)
    committed = writer.commit(record(1, prompt=nasty, negative_prompt="blur,\r\nnoise", seed=4242), image(9))
    writer.close()
    path = folder / committed["image"]
    info = ParserManager().parse(str(path))
    assert info is not None and len(info.samplers) == 1
    sampler = info.samplers[0]
    assert [p.value for p in sampler.prompts] == ["a cat Negative prompt - dogs Steps: 99"]
    assert [p.value for p in sampler.negative_prompts] == ["blur, noise"]
    assert sampler.parameters["seed"] == "4242" and sampler.parameters["steps"] == "1"
    assert sampler.model.hash == "0123abcdef" and sampler.model.name == "m"
    with Image.open(path) as png:
        assert json.loads(png.text["zoetrope"])["prompt"] == nasty


def test_a_v1_step_keeps_its_raw_infotext():
    from zoetrope.loop.chainlog import a1111_parameters

    text = a1111_parameters(record(1, prompt="a\nb"), {"id": "m", "hash": "0123abcdef"}, written_as=1)
    assert text.startswith("a\nb\nNegative prompt: blur\n") and "Model hash" not in text

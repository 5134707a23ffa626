"""What 0.2.0 wrote still works: a v1 chain (tests/data/chain-v1, 3 steps, 64 px, tiny models, the guard
fired with a lexicon word at step 3) loads, verifies and resumes; a 0.2.0 frame cache is reused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from zoetrope.cli.main import main
from zoetrope.curate.replay import expected_prompt
from zoetrope.loop.chainlog import LOG_NAME, SCHEMA_VERSION, read_chain

DATA = Path(__file__).parent / "data"


@pytest.fixture
def v1_chain(tmp_path) -> Path:
    folder = tmp_path / "chain-v1"
    shutil.copytree(DATA / "chain-v1", folder)
    return folder


def test_a_v1_log_reads_with_the_guard_as_fields(v1_chain):
    chain = read_chain(v1_chain)
    assert chain.version_on_disk == 1 and chain.header["schema_version"] == SCHEMA_VERSION == 2
    first, second, third = chain.steps
    assert (first["attempt"], first["recaptioned"], first["appended_word"]) == (0, False, None)
    assert second["recaptioned"] is False
    assert third["recaptioned"] is True and third["appended_word"] == "ghost"
    assert third["caption_params"]["mode"] == "sample"
    # replay builds the prompt from the fields, and it is what 0.2.0 painted
    assert expected_prompt(chain.header["config"], third) == third["prompt"] == f"{third['caption']}, ghost"
    assert all(chain.written_as(s["step"]) == 1 for s in chain.steps)


def test_a_v1_chain_verifies(v1_chain, capsys):
    before = sorted((p.name, p.stat().st_mtime_ns) for p in v1_chain.iterdir())
    assert main(["replay", "verify", str(v1_chain)]) == 0, capsys.readouterr().out
    assert "all 3 steps reproduce" in capsys.readouterr().out
    assert sorted((p.name, p.stat().st_mtime_ns) for p in v1_chain.iterdir()) == before  # verify never writes


def test_a_v1_chain_resumes_upgraded_and_still_verifies(v1_chain, capsys):
    original = (v1_chain / LOG_NAME).read_bytes()
    assert main(["loop", "--resume", str(v1_chain), "--steps", "5"]) == 0
    chain = read_chain(v1_chain)
    assert [s["step"] for s in chain.steps] == [1, 2, 3, 4, 5] and chain.version_on_disk == 2
    assert (v1_chain / f"{LOG_NAME}.v1").read_bytes() == original  # the old file is kept as it was
    upgrade = chain.header["migrated"]
    assert [(u["from_version"], u["steps"]) for u in upgrade] == [(1, 3)]
    assert [chain.written_as(n) for n in range(1, 6)] == [1, 1, 1, 2, 2]
    assert chain.steps[3]["input_image"] == "step-000003.png"
    assert chain.steps[3]["input_sha256"] == chain.steps[2]["image_sha256"]
    on_disk = [json.loads(line) for line in (v1_chain / LOG_NAME).read_text().splitlines()]
    assert on_disk[0]["schema_version"] == 2 and all("recaptioned" in r for r in on_disk[1:])
    capsys.readouterr()
    assert main(["replay", "verify", str(v1_chain)]) == 0  # v1 steps keep their v1 PNG chunks
    assert "all 5 steps reproduce" in capsys.readouterr().out


def test_a_0_2_frame_cache_re_renders_once_beside_its_old_frames(tmp_path, capsys):
    """0.2-0.4 caches painted at the process's thread count and decoded whole; 0.8's rule (one thread a call on
    CPU, latents decoded one at a time) keys other frames: they are painted once, the old ones left as they are."""
    cache = tmp_path / "films" / "scene-v1" / "frames"
    shutil.copytree(DATA / "frames-v1", cache)
    before = {p.name: p.read_bytes() for p in cache.iterdir()}
    out = tmp_path / "out" / "f.mp4"
    assert main(["render", str(DATA / "scene-v1.yaml"), "--models", "tiny", "--cache-root", str(tmp_path / "films"),
                 "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "frames: 0 cached, 4 rendered" in text, text
    assert out.is_file() and {p.name: p.read_bytes() for p in cache.iterdir() if p.name in before} == before
    assert main(["render", str(DATA / "scene-v1.yaml"), "--models", "tiny", "--cache-root", str(tmp_path / "films"),
                 "--out", str(out)]) == 0
    assert "frames: 4 cached, 0 rendered" in capsys.readouterr().out  # once


def test_v1_steps_re_encode_to_their_logged_bytes(v1_chain):
    """Verify's byte identity for old steps: a migrated v1 record encodes its PNG chunk in the v1 shape."""
    from PIL import Image

    from zoetrope.base.files import sha256_bytes
    from zoetrope.loop.chainlog import encode_png, painter_of

    chain = read_chain(v1_chain)
    model = painter_of(chain.header)
    for record in chain.steps:
        with Image.open(v1_chain / record["image"]) as png:
            pixels = png.convert("RGB")
        assert sha256_bytes(encode_png(pixels, record, model, chain.written_as(record["step"]))) == record["image_sha256"]
        assert sha256_bytes(encode_png(pixels, record, model)) != record["image_sha256"]  # v2's chunk differs

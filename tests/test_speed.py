"""Speed options: same pictures with SDPA or eager attention and channels_last; TAESD swaps the decoder."""

import numpy as np
import pytest
import torch

from zoetrope.cli.main import main
from zoetrope.settings.loop import LoopConfig
from zoetrope.settings.params import PaintParams, SpeedOptions
from zoetrope.stages.models import load_painter

PARAMS = PaintParams(steps=2, width=64, height=64)


def pixels(painter, seed=3):
    return np.asarray(painter.paint(["a lighthouse"], params=PARAMS, seeds=[seed])[0]).astype(int)


def test_attention_and_layout_do_not_change_the_picture(cpu, tiny_painter):
    reference = pixels(tiny_painter)
    for options in (SpeedOptions(attention="eager"), SpeedOptions(channels_last=True)):
        other = pixels(load_painter("tiny", cpu, speed=options))
        assert np.abs(other - reference).max() <= 1  # float reordering only, never another image


def test_taesd_replaces_the_decoder(cpu, tiny_painter):
    from diffusers import AutoencoderTiny

    fast = load_painter("tiny", cpu, speed=SpeedOptions(vae="taesd"))
    assert isinstance(fast.text2img.vae, AutoencoderTiny) and fast.img2img.vae is fast.text2img.vae
    (image,) = fast.paint(["a lighthouse"], params=PARAMS, seeds=[3])
    assert image.size == (64, 64)
    (drift,) = fast.paint(["a lighthouse"], params=PaintParams(steps=4, width=64, height=64, strength=0.5),
                          seeds=[4], init_images=[image])
    assert drift.size == (64, 64)


def test_speed_section_validates_and_cli_overrides_it(tmp_path, capsys):
    assert LoopConfig.model_validate({"speed": {"channels_last": True}}).speed.channels_last
    config = tmp_path / "c.yaml"
    config.write_text("paint:\n  width: 64\n  height: 64\nspeed:\n  attention: flash\n")
    assert main(["loop", str(config), "--models", "tiny", "--steps", "1", "--out", str(tmp_path / "o")]) == 2
    assert "speed.attention: Input should be 'sdpa' or 'eager'" in capsys.readouterr().err
    config.write_text("paint:\n  width: 64\n  height: 64\n")
    assert main(["loop", str(config), "--models", "tiny", "--steps", "1", "--vae", "taesd", "--channels-last",
                 "--out", str(tmp_path / "o")]) == 0
    from zoetrope.loop.chainlog import read_chain

    assert read_chain(tmp_path / "o").header["config"]["speed"] == {
        "attention": "sdpa", "channels_last": True, "compile": False, "vae": "taesd"}


def test_missing_taesd_is_an_error_not_the_full_vae(cpu, tmp_path):
    from zoetrope.base.errors import ModelLoadError

    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="cannot load"):
        load_painter("tiny", cpu, speed=SpeedOptions(vae=str(tmp_path / "empty")))


def test_taesd_is_a_decoder_not_a_painter():
    from zoetrope.base.errors import UserError
    from zoetrope.stages.models import resolve
    from zoetrope.stages.presets import PRESETS

    assert PRESETS["taesd"].role == PRESETS["taesdxl"].role == "decoder"
    with pytest.raises(UserError, match="'taesd' is a decoder preset, but a painter was asked for"):
        resolve("painter", "taesd")


def test_decoder_presets_resolve_to_their_hub_ids(cpu, monkeypatch):
    """`--vae taesdxl` names a preset, not a Hub id; the loader sees the preset's repo id."""
    import diffusers

    from zoetrope.stages.models import load_taesd
    from zoetrope.stages.presets import ModelRef

    seen = []
    monkeypatch.setattr(diffusers.AutoencoderTiny, "from_pretrained", lambda source, **kw: seen.append(source) or torch.nn.Identity())
    painter = ModelRef("painter", "stabilityai/sd-turbo", "stabilityai/sd-turbo")
    xl = ModelRef("painter", "stabilityai/sdxl-turbo", "stabilityai/sdxl-turbo")
    load_taesd("taesdxl", painter, cpu)
    load_taesd("taesd", painter, cpu)
    load_taesd("taesd", xl, cpu)
    assert seen == ["madebyollin/taesdxl", "madebyollin/taesd", "madebyollin/taesdxl"]


@pytest.mark.parametrize("guidance", [0.0, 4.0])
@pytest.mark.parametrize("scheduler", ["euler", "dpm++", "ddim"])
def test_the_lean_path_paints_the_pipelines_pixels(tiny_painter, guidance, scheduler, monkeypatch):
    """Painter.denoise + decode (walks and loops) give the same bytes as the pipeline's own __call__, so frame
    caches and logged chains made before them stay valid."""
    params = PaintParams(steps=3, width=64, height=64, guidance=guidance, scheduler=scheduler)
    prompts, negatives = ["a red moon", "two cats"], ["", "blur"]
    embeds = tiny_painter.encode(prompts, negatives, guidance)
    latents = tiny_painter.noise([1, 2], 64, 64)
    assert tiny_painter.lean(embeds, params)
    lean = [tiny_painter.paint(params=params, prompt_embeds=embeds, latents=latents),
            tiny_painter.paint(prompts, params=params, seeds=[1, 2], negative_prompts=negatives)]
    monkeypatch.setattr(tiny_painter, "lean", lambda *args: False)
    pipeline = [tiny_painter.paint(params=params, prompt_embeds=embeds, latents=latents),
                tiny_painter.paint(prompts, params=params, seeds=[1, 2], negative_prompts=negatives)]
    for ours, theirs in zip(lean, pipeline, strict=True):
        assert [np.asarray(im).tobytes() for im in ours] == [np.asarray(im).tobytes() for im in theirs]


def test_the_lean_path_is_taken_only_where_it_reproduces_the_pipeline(tiny_painter):
    params = PaintParams(steps=1, width=64, height=64, guidance=4.0)
    embeds = tiny_painter.encode(["a red moon"], None, 4.0)
    assert tiny_painter.lean(embeds, params) and tiny_painter.lean(None, params)
    assert not tiny_painter.lean({"prompt_embeds": embeds["prompt_embeds"]}, params)  # the pipeline encodes ""
    assert tiny_painter.lean({"prompt_embeds": embeds["prompt_embeds"]}, PaintParams(steps=1, width=64, height=64))

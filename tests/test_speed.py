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
def test_a_walk_call_paints_the_pipelines_pixels(tiny_painter, guidance, scheduler):
    """Painter.paint runs diffusers' own __call__ (issue 25: no re-implemented denoising loop); a walk's call
    decodes its latents one at a time, which is the pipeline's own decode of each latent alone."""
    params = PaintParams(steps=3, width=64, height=64, guidance=guidance, scheduler=scheduler)
    embeds = tiny_painter.encode(["a red moon", "two cats"], ["", "blur"], guidance)
    latents = tiny_painter.noise([1, 2], 64, 64)
    ours = tiny_painter.paint(params=params, prompt_embeds=embeds, latents=latents, keep=2)
    pipe = tiny_painter.text2img
    for row in range(2):
        alone = {name: t[row:row + 1] for name, t in embeds.items()}
        lat = pipe(latents=latents[row:row + 1], num_inference_steps=3, guidance_scale=guidance, width=64,
                   height=64, output_type="latent", **alone).images
        batch = pipe(latents=latents, num_inference_steps=3, guidance_scale=guidance, width=64, height=64,
                     output_type="latent", **embeds).images
        theirs = tiny_painter.decode(batch[row:row + 1])[0]
        assert np.asarray(ours[row]).tobytes() == np.asarray(theirs).tobytes()
        assert lat.shape == batch[row:row + 1].shape


def test_row_guidance_guides_each_row_as_a_call_of_that_row_alone_would(tiny_painter):
    """A guidance schedule's rows (RowGuidance) through the pipeline's __call__: each row of a call with two
    guidances equals the same call with that row's guidance for every row."""
    params = PaintParams(steps=2, width=64, height=64, guidance=5.0)
    embeds = tiny_painter.encode(["a red moon", "two cats"], ["", "blur"], 5.0)
    latents = tiny_painter.noise([1, 2], 64, 64)
    mixed = tiny_painter.paint(params=params, prompt_embeds=embeds, latents=latents, guidance_rows=[2.0, 5.0])
    low = tiny_painter.paint(params=params, prompt_embeds=embeds, latents=latents, guidance_rows=[2.0, 2.0])
    high = tiny_painter.paint(params=params, prompt_embeds=embeds, latents=latents)
    assert np.asarray(mixed[0]).tobytes() == np.asarray(low[0]).tobytes()
    assert np.asarray(mixed[1]).tobytes() == np.asarray(high[1]).tobytes()
    assert np.asarray(mixed[0]).tobytes() != np.asarray(high[0]).tobytes()

"""The real-size rehearsal kit (bench/rehearse.py): its parameter table and Hub-layout writer, fast and unmarked so
the kit cannot rot; and, marked `rehearsal` (deselected by scripts/test.sh: minutes and GBs each), the rehearsal
itself: real architectures, random weights, the real commands by preset name against a scratch Hub cache.

    HF_HUB_OFFLINE=1 .venv/bin/python -m pytest -m rehearsal tests/test_rehearsal.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "bench")]

from rehearse_arch import REPOS, SD_VAE, Aux, Model, Repo, file_size  # noqa: E402


def test_the_meta_count_of_the_sd_vae_is_the_published_one():
    from rehearse_hub import count

    vae = next(m for m in REPOS["sd-turbo"].models() if m.folder == "vae")
    assert count(vae) == SD_VAE.low == 83_653_863 and SD_VAE.exact


def test_a_file_size_becomes_the_parameter_range_it_implies():
    pub = file_size(3.46, "unet 3.46 GB")  # sd-turbo's fp32 UNet
    assert pub.matches(865_910_724) and not pub.matches(859_520_964) and pub.what == "stored"


def test_every_published_count_is_met_by_the_built_architecture():
    """The whole table on the meta device (no weights): what `bench/rehearse.py --counts` prints."""
    import rehearse

    rows, ok = rehearse.counts_table()
    assert ok, [r for r in rows if r["match"] is False]
    exact = {("sd15", "unet"): 859_520_964, ("sd-turbo", "unet"): 865_910_724, ("sdxl-turbo", "unet"): 2_567_463_684,
             ("sd15", "vae"): 83_653_863, ("sd15", "text_encoder"): 123_060_480,
             ("ltx-video", "text_encoder"): 4_762_310_656}  # stated by their publishers (rehearse_arch.py)
    built = {(r["preset"], r["component"]): r for r in rows}
    for key, n in exact.items():
        assert built[key]["built"] == n and built[key]["published"] == f"{n:,}" and built[key]["match"], key
    assert {r["preset"] for r in rows} >= {"sd-turbo", "sdxl-turbo", "sd15", "blip-base", "blip-large", "ltx-video"}


def test_every_preset_has_a_published_architecture():
    from rehearse_arch import NOT_YET

    from zoetrope.stages.presets import PRESETS

    assert NOT_YET == {} and set(REPOS) == set(PRESETS)
    x4 = {a.folder: a.cls for a in REPOS["sd-x4-upscaler"].parts if isinstance(a, Aux)}
    assert x4["low_res_scheduler"] == "DDPMScheduler" and x4["scheduler"] == "DDIMScheduler"


def test_the_tokenizers_have_the_real_vocabulary_sizes(tmp_path):
    """CLIP's 49,408 tokens (synthetic merges where no BPE file is found) and T5's 32,100, read back by the same
    transformers classes the pipelines use (T5's spiece.model needs sentencepiece and protobuf)."""
    from rehearse_hub import clip_vocab, save_t5_tokenizer
    from transformers import AutoTokenizer

    vocab, merges = clip_vocab()
    assert len(vocab) == 49408 and len(merges) == 48894 and vocab["<|endoftext|>"] == 49407
    t5 = next(a for a in REPOS["ltx-video"].parts if isinstance(a, Aux) and a.kind == "t5_tokenizer")
    save_t5_tokenizer(t5, tmp_path)
    tok = AutoTokenizer.from_pretrained(tmp_path)
    assert len(tok) == 32100 and tok("a candle").input_ids[-1] == 1  # </s>


def tiny_repo() -> Repo:
    tiny_vae = Model("vae", "diffusers", "AutoencoderKL",
                     dict(block_out_channels=[8, 8], layers_per_block=1, norm_num_groups=4, latent_channels=4,
                          down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2),
                     None, "diffusion_pytorch_model.safetensors", fp16=True)
    scheduler = Aux("scheduler", "scheduler", "EulerDiscreteScheduler", {"timestep_spacing": "trailing"},
                    ("scheduler_config.json",))
    return Repo("sd-turbo", "0" * 40, "test", "StableDiffusionPipeline", (tiny_vae, scheduler))


def test_the_writer_lays_a_model_out_as_the_hub_client_caches_it(tmp_path, monkeypatch):
    from huggingface_hub import snapshot_download, try_to_load_from_cache
    from rehearse_hub import write_repo

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = write_repo(tiny_repo(), tmp_path)
    assert out["missing"] == [] and out["counts"]["vae"] > 0
    root = tmp_path / "models--stabilityai--sd-turbo"
    assert (root / "refs" / "main").read_text() == "0" * 40
    snapshot = root / "snapshots" / ("0" * 40)
    names = {str(p.relative_to(snapshot)) for p in snapshot.rglob("*") if p.is_symlink()}
    assert names == {"model_index.json", "scheduler/scheduler_config.json", "vae/config.json",
                     "vae/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.fp16.safetensors"}
    weights = snapshot / "vae" / "diffusion_pytorch_model.safetensors"
    assert weights.resolve().parent == root / "blobs" and len(weights.resolve().name) == 64  # sha256, as LFS
    index = json.loads((snapshot / "model_index.json").read_text())
    assert index["vae"] == ["diffusers", "AutoencoderKL"] and index["_class_name"] == "StableDiffusionPipeline"
    # The Hub client finds it offline, by id and by the default ref, exactly as a load of the preset will.
    assert try_to_load_from_cache("stabilityai/sd-turbo", "model_index.json", cache_dir=tmp_path) == str(
        snapshot / "model_index.json")
    assert Path(snapshot_download("stabilityai/sd-turbo", cache_dir=tmp_path, local_files_only=True)) == snapshot

    from safetensors import safe_open

    with safe_open(snapshot / "vae" / "diffusion_pytorch_model.fp16.safetensors", "pt") as f:  # the fp16 variant
        assert {str(f.get_slice(k).get_dtype()) for k in f.keys()} == {"F16"}


def test_a_pull_also_fetches_the_pickle_weights_of_a_folder_without_safetensors():
    """blip-base's main has only pytorch_model.bin: the pull's safetensors-only patterns fetched no weights."""
    from zoetrope.stages.presets import pickle_only_weights

    blip_base = ["config.json", "preprocessor_config.json", "pytorch_model.bin", "tf_model.h5", "vocab.txt"]
    assert pickle_only_weights(blip_base) == ["pytorch_model.bin"]
    sd = ["unet/diffusion_pytorch_model.bin", "unet/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.bin"]
    assert pickle_only_weights(sd) == ["vae/diffusion_pytorch_model.bin"]
    assert pickle_only_weights(["model.safetensors", "pytorch_model.bin", "training_args.bin"]) == []


# ------------------------------------------------------------------------------------- the rehearsal itself
def rehearse(*scenarios: str, tmp: Path) -> subprocess.CompletedProcess:
    argv = [sys.executable, str(ROOT / "bench" / "rehearse.py"), "--scratch", str(tmp)]
    for name in scenarios:
        argv += ["--scenario", name]
    return subprocess.run(argv, cwd=ROOT, env=os.environ | {"HF_HUB_OFFLINE": "1"}, capture_output=True, text=True,
                          timeout=7200)


@pytest.mark.rehearsal
@pytest.mark.parametrize("scenarios", [("loop-base", "loop-large"), ("loop-base", "render-walk", "render-drift"),
                                       ("loop-base", "taesd"), ("sd15", "animatediff"), ("sdxl-turbo",), ("ltx",),
                                       ("upscale-x2",), ("upscale-x4",), ("bf16-probe",)])
def test_the_real_commands_run_on_real_size_architectures(scenarios, tmp_path):
    result = rehearse(*scenarios, tmp=tmp_path)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "exit 0" in result.stdout and "exit 1" not in result.stdout

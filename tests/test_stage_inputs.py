"""The stages refuse bad calls up front, one line naming the argument and its value; and the Protocols hold.

Every check runs against the real tiny Painter/Captioner, and every bad call here would otherwise paint or
caption something (one input silently ignored) or fail deep inside a pipeline with an unrelated error.
"""

from __future__ import annotations

import inspect
import subprocess
import sys
from collections.abc import Callable

import pytest
import torch
from PIL import Image

from tests.fakes import FakeCaptioner, FakePainter
from zoetrope.settings.params import CaptionParams, PaintParams
from zoetrope.stages.protocols import CaptionerLike, PainterLike, WalkPainterLike

SMALL = PaintParams(steps=2, width=64, height=64)
DRIFT = PaintParams(steps=4, width=64, height=64, strength=0.5)
START = Image.new("RGB", (64, 64), "teal")


def embeds(painter, n: int = 2) -> dict[str, torch.Tensor]:
    return painter.encode([f"prompt {i}" for i in range(n)], None, 0.0)


def noise(painter, n: int = 2, size: int = 64) -> torch.Tensor:
    return painter.noise(list(range(n)), size, size)


# (what is wrong, the paint() keyword arguments for the tiny painter, a pattern the message must match)
BAD_PAINTS: list[tuple[str, Callable[[object], dict], str]] = [
    ("height not a multiple of 8", lambda p: dict(prompts=["x"], params=PaintParams(width=64, height=60), seeds=[0]),
     r"^`params.height` and `params.width` have to be positive and divisible by 8 but are 60 and 64: "),
    ("zero width", lambda p: dict(prompts=["x"], params=PaintParams(width=0, height=64), seeds=[0]),
     r"`params.height` and `params.width` have to be positive and divisible by 8 but are 64 and 0"),
    ("unknown scheduler", lambda p: dict(prompts=["x"], params=PaintParams(width=64, height=64, scheduler="nope"),
                                         seeds=[0]),
     r"^`params.scheduler` must be one of \[.*'euler'.*\] but is 'nope'\.$"),
    ("strength above 1", lambda p: dict(prompts=["x"], params=PaintParams(width=64, height=64, strength=1.5),
                                        seeds=[0], init_images=[START]),
     r"^`params.strength` must be in \(0, 1\] but is 1\.5\.$"),
    ("strength 0", lambda p: dict(prompts=["x"], params=PaintParams(width=64, height=64, strength=0.0),
                                  seeds=[0], init_images=[START]),
     r"^`params.strength` must be in \(0, 1\] but is 0\.0\.$"),
    ("strength too small for the steps", lambda p: dict(prompts=["x"], params=PaintParams(steps=1, width=64,
                                                        height=64, strength=0.5), seeds=[0], init_images=[START]),
     r"int\(steps x strength\) steps, but 1 x 0\.5 gives none"),
    ("prompts and prompt_embeds", lambda p: dict(prompts=["a", "b"], prompt_embeds=embeds(p), params=SMALL,
                                                 seeds=[1, 2]),
     r"^`prompts` and `prompt_embeds` were both given \(`prompts`=\['a', 'b'\], `prompt_embeds` "
     r"\{'prompt_embeds': \(2, 77, \d+\)\}\); pass one of them\.$"),
    ("neither prompts nor prompt_embeds", lambda p: dict(params=SMALL, seeds=[1]),
     r"^`prompts` and `prompt_embeds` are both None; pass one of them\.$"),
    ("a bare string as prompts", lambda p: dict(prompts="a cat", params=SMALL, seeds=[1]),
     r"^`prompts` must be a list with one entry per image but is a str \('a cat'\); wrap it in a list\.$"),
    ("no prompts at all", lambda p: dict(prompts=[], params=SMALL, seeds=[]),
     r"^`prompts` is an empty list; pass at least one image's worth\.$"),
    ("no embedding rows", lambda p: dict(prompt_embeds=embeds(p, 1) | {"prompt_embeds": torch.zeros(0, 77, 32)},
                                         params=SMALL, latents=torch.zeros(0, 4, 8, 8)),
     r"^`prompt_embeds` has 0 rows; pass at least one image's worth\.$"),
    ("prompt_embeds a bare tensor", lambda p: dict(prompt_embeds=embeds(p)["prompt_embeds"], params=SMALL,
                                                   latents=noise(p)),
     r"^`prompt_embeds` must be a dict of tensors, as Painter.encode returns, but is a Tensor of shape \(2, 77, \d+\)"),
    ("prompt_embeds without its main tensor", lambda p: dict(prompt_embeds={"pooled": torch.zeros(2, 8)},
                                                             params=SMALL, latents=noise(p)),
     r"^`prompt_embeds` has no 'prompt_embeds' tensor \(it holds \{'pooled': \(2, 8\)\}\)"),
    ("prompt_embeds rows disagree", lambda p: dict(prompt_embeds=embeds(p) | {"negative_prompt_embeds":
                                                   embeds(p, 3)["prompt_embeds"]}, params=SMALL, latents=noise(p)),
     r"^`prompt_embeds` tensors disagree on their rows \(.*'negative_prompt_embeds': \(3, 77, \d+\)\}\); pass one row"),
    ("seeds and latents", lambda p: dict(prompts=["x"], params=SMALL, seeds=[3], latents=noise(p, 1)),
     r"^`seeds` and `latents` were both given \(1 seeds, latents of shape \(1, 4, 8, 8\)\); pass one of them\.$"),
    ("neither seeds nor latents", lambda p: dict(prompts=["x"], params=SMALL),
     r"^`seeds` and `latents` are both None; pass `seeds` \(one per image\) or `latents`\.$"),
    ("a bare int as seeds", lambda p: dict(prompts=["x"], params=SMALL, seeds=7),
     r"^`seeds` must be a list with one entry per image but is a int \(7\)"),
    ("fewer seeds than prompts", lambda p: dict(prompts=["a", "b"], params=SMALL, seeds=[7]),
     r"^got 2 prompts but 1 seeds \(`seeds`=\[7\]\); pass one seed per image\.$"),
    ("more latents than embedding rows", lambda p: dict(prompt_embeds=embeds(p), params=SMALL, latents=noise(p, 3)),
     r"^got 2 rows of `prompt_embeds` but `latents` of shape \(3, 4, 8, 8\), 3 rows; pass one row"),
    ("latents for another size", lambda p: dict(prompt_embeds=embeds(p, 1), params=SMALL, latents=noise(p, 1, 128)),
     r"^`latents` of shape \(1, 4, 16, 16\) do not fit a 64x64 image, which needs rows of shape \(4, 8, 8\)"),
    ("fewer negative prompts than prompts", lambda p: dict(prompts=["a", "b"], params=SMALL, seeds=[1, 2],
                                                           negative_prompts=["blurry"]),
     r"^got 2 prompts but 1 negative prompts \(`negative_prompts`=\['blurry'\]\); pass one per prompt\.$"),
    ("negative prompts with embeddings", lambda p: dict(prompt_embeds=embeds(p, 1), params=SMALL,
                                                        latents=noise(p, 1), negative_prompts=["blurry"]),
     r"^`negative_prompts` \(\['blurry'\]\) cannot go with `prompt_embeds`"),
    ("fewer init images than prompts", lambda p: dict(prompts=["a", "b"], params=DRIFT, seeds=[1, 2],
                                                      init_images=[START]),
     r"^got 2 prompts but 1 init images \(`init_images`\); pass one init image per prompt\.$"),
    ("init images with latents", lambda p: dict(prompt_embeds=embeds(p, 1), params=DRIFT, latents=noise(p, 1),
                                                init_images=[START]),
     r"^`init_images` and `latents` were both given \(latents of shape \(1, 4, 8, 8\)\); image-to-image draws"),
    ("init images without strength", lambda p: dict(prompts=["x"], params=SMALL, seeds=[1], init_images=[START]),
     r"^`init_images` were given but `params.strength` is None; image-to-image needs a strength in \(0, 1\]\.$"),
]


@pytest.mark.parametrize(("make", "pattern"), [(make, pattern) for _, make, pattern in BAD_PAINTS],
                         ids=[what for what, _, _ in BAD_PAINTS])
def test_painter_refuses_bad_calls_in_one_line(tiny_painter, make, pattern):
    kwargs = make(tiny_painter)
    prompts = kwargs.pop("prompts", None)
    with pytest.raises(ValueError, match=pattern) as info:
        tiny_painter.paint(prompts, **kwargs)
    assert "\n" not in str(info.value) and "`" in str(info.value)


def test_painter_checks_before_any_work(tiny_painter, monkeypatch):
    """A refused call must not swap the scheduler or reach a pipeline."""
    def boom(*args, **kwargs):
        raise AssertionError("the pipeline ran")

    monkeypatch.setattr(tiny_painter, "use_scheduler", boom)
    with pytest.raises(ValueError, match="1 seeds"):
        tiny_painter.paint(["a", "b"], params=SMALL, seeds=[1])


def test_painter_accepts_every_call_pattern_its_callers_use(tiny_painter):
    """The loop (prompts, seeds, negatives, drift), the walk (embeddings, latents) and the memory probe."""
    check = tiny_painter.check_inputs
    assert check(["a", "b"], params=SMALL, seeds=[1, 2], negative_prompts=["", ""]) == 2
    assert check(["a"], params=DRIFT, seeds=[1], negative_prompts=[""], init_images=[START]) == 1
    assert check(params=SMALL, prompt_embeds=embeds(tiny_painter, 3), latents=noise(tiny_painter, 3)) == 3
    guided = tiny_painter.encode(["a"], ["b"], 7.5)  # negative embeddings ride along in the dict
    assert check(params=SMALL, prompt_embeds=guided, latents=noise(tiny_painter, 1)) == 1
    assert check(params=SMALL, prompt_embeds=embeds(tiny_painter, 2), seeds=[4, 5]) == 2
    # text-to-image params that still carry a strength are fine: it applies only with init images
    assert check(["a"], params=DRIFT, seeds=[1]) == 1
    (image,) = tiny_painter.paint(params=SMALL, prompt_embeds=embeds(tiny_painter, 1), latents=noise(tiny_painter, 1))
    assert image.size == (64, 64)


def images(n: int) -> list[Image.Image]:
    return [Image.new("RGB", (32, 32), colour) for colour in ("teal", "orange", "navy")[:n]]


BEAM = CaptionParams(max_length=8)
SAMPLE = CaptionParams(mode="sample", max_length=8)
BAD_CAPTIONS: list[tuple[str, Callable[[], tuple], str]] = [
    ("no images", lambda: ([], BEAM, None), r"^`images` is an empty list; pass at least one image to caption\.$"),
    ("a bare image", lambda: (images(1)[0], BEAM, None),
     r"^`images` must be a list of PIL images but is a single PIL image; wrap it in a list\.$"),
    ("an unknown mode", lambda: (images(1), CaptionParams(mode="greedy"), [1]),
     r"^`params.mode` must be 'beam' or 'sample' but is 'greedy'\.$"),
    ("sampling without seeds", lambda: (images(2), SAMPLE, None),
     r"^sampling captions \(`params.mode`='sample'\) needs `seeds`, one seed per image, but `seeds` is None "
     r"for 2 images\.$"),
    ("fewer seeds than images (sampling)", lambda: (images(2), SAMPLE, [1]),
     r"^got 2 images but 1 seeds \(`seeds`=\[1\]\); pass one seed per image\.$"),
    ("more seeds than images (beam)", lambda: (images(1), BEAM, [1, 2, 3]),
     r"^got 1 images but 3 seeds \(`seeds`=\[1, 2, 3\]\); pass one seed per image\.$"),
    ("a bare int as seeds", lambda: (images(1), SAMPLE, 4), r"^`seeds` must be a list of ints but is a int \(4\)"),
]


@pytest.mark.parametrize(("make", "pattern"), [(make, pattern) for _, make, pattern in BAD_CAPTIONS],
                         ids=[what for what, _, _ in BAD_CAPTIONS])
def test_captioner_refuses_bad_calls_in_one_line(tiny_captioner, make, pattern):
    with pytest.raises(ValueError, match=pattern) as info:
        tiny_captioner.caption(*make())
    assert "\n" not in str(info.value) and "`" in str(info.value)


def test_captioner_accepts_its_callers_patterns(tiny_captioner):
    """Beam search with or without seeds (the chain always passes one), sampling with one seed per image."""
    two = images(2)
    assert tiny_captioner.caption(two, BEAM, seeds=[1, 2]) == tiny_captioner.caption(two, BEAM)
    assert len(tiny_captioner.caption(two, SAMPLE, seeds=[1, 2])) == 2


def test_fakes_and_real_stages_satisfy_the_protocols(tiny_painter, tiny_captioner):
    from zoetrope.loop.care.policy import Blocklist, GuardedPainter
    from zoetrope.loop.multichain import GatedCaptioner, GatedPainter

    assert isinstance(FakeCaptioner(), CaptionerLike) and isinstance(FakePainter(), PainterLike)
    assert isinstance(tiny_captioner, CaptionerLike)
    assert isinstance(tiny_painter, PainterLike) and isinstance(tiny_painter, WalkPainterLike)
    # the loop's wrappers pass the contract on (by delegation)
    assert isinstance(GuardedPainter(FakePainter(), Blocklist(["x"])), PainterLike)
    assert isinstance(GatedPainter(tiny_painter, None), WalkPainterLike)
    assert isinstance(GatedCaptioner(FakeCaptioner(), None), CaptionerLike)
    # and they say no to what does not fit: a loop fake cannot walk, a captioner cannot paint
    assert not isinstance(FakePainter(), WalkPainterLike)
    assert not isinstance(tiny_captioner, PainterLike)
    assert not isinstance(FakeCaptioner(), PainterLike) and not isinstance(object(), CaptionerLike)


def _accepts(impl: Callable, contract: Callable) -> list[str]:
    """Parameters the contract's method names that `impl` cannot take (isinstance checks names only)."""
    have = inspect.signature(impl).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in have.values()):
        have = {**have, **{n: None for n in inspect.signature(contract).parameters}}
    return [n for n in inspect.signature(contract).parameters if n != "self" and n not in have]


@pytest.mark.parametrize(("impl", "contract"), [
    (FakeCaptioner, CaptionerLike), (FakePainter, PainterLike),
    ("Captioner", CaptionerLike), ("Painter", PainterLike), ("Painter", WalkPainterLike),
])
def test_implementations_take_every_argument_of_the_contract(impl, contract):
    if isinstance(impl, str):
        from zoetrope.stages.caption import Captioner
        from zoetrope.stages.paint import Painter

        impl = {"Captioner": Captioner, "Painter": Painter}[impl]
    methods = [name for name, member in vars(contract).items() if inspect.isfunction(member) and name[0] != "_"]
    for base in contract.__mro__[1:]:
        if base in (CaptionerLike, PainterLike):
            methods += [n for n, m in vars(base).items() if inspect.isfunction(m) and n[0] != "_"]
    assert {"caption"} <= set(methods) or {"paint", "count_tokens"} <= set(methods)
    for name in set(methods):
        assert _accepts(getattr(impl, name), getattr(contract, name)) == [], f"{impl.__name__}.{name}"


def test_protocols_import_without_torch():
    code = "import sys, zoetrope.stages.protocols; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"

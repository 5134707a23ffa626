"""Loop config: defaults validate, and every mistake is one line naming file, line and field."""

from pathlib import Path

import pytest

from zoetrope.base.errors import UserError
from zoetrope.settings.loop import LoopConfig, load_loop_config

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "loops").glob("*.yaml")))
def test_shipped_loop_configs_validate(name):
    config = load_loop_config(ROOT / "loops" / name)
    assert config.schema_version == 1


def test_default_config_is_a_prompt_started_endless_sd_turbo_loop():
    config = LoopConfig()
    assert config.steps is None and config.start.prompt and config.models.painter == "sd-turbo"


def _error(tmp_path, text: str) -> str:
    path = tmp_path / "loop.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(UserError) as info:
        load_loop_config(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    return message


@pytest.mark.parametrize(
    "text, expected",
    [
        ("name: x\nseed: 1\ncolour: red\n", ":3: colour: unknown key"),
        ("paint:\n  steps: 4\n  widht: 512\n", ":3: paint.widht: unknown key"),
        ("paint:\n  width: 500\n", ":2: paint.width: Input should be a multiple of 8 (got 500)"),
        ("paint:\n  steps: many\n", ":2: paint.steps: Input should be a valid integer"),
        ("paint:\n  steps: 0\n", ":2: paint.steps: Input should be greater than or equal to 1"),
        ("paint:\n  scheduler: warp\n", ":2: paint.scheduler: must be one of"),
        ("paint:\n  strength: 1.5\n", ":2: paint.strength: Input should be less than or equal to 1"),
        ("caption:\n  mode: dream\n", ":2: caption.mode: Input should be 'beam' or 'sample'"),
        ("caption:\n  min_length: 40\n  max_length: 20\n", "caption: min_length (40) must not exceed max_length (20)"),
        ("start:\n  image: a.png\n  prompt: b\n", "start: give exactly one of `image` or `prompt`"),
        ("prompt:\n  template: '{prefix} {suffix}'\n", ":2: prompt.template: must contain {caption}"),
        ("prompt:\n  template: '{caption} {colour}'\n", "prompt.template: only {prefix}, {caption} and {suffix}"),
        ("guard:\n  lexicon: []\n", ":2: guard.lexicon: List should have at least 1 item"),
        ("schema_version: 2\n", ":1: schema_version: Input should be 1"),
        ("paint:\n  mode: drift\n  steps: 1\n  strength: 0.6\n", "paint: drift mode denoises int(steps x strength) steps"),
        ("seed: -3\n", ":1: seed: Input should be greater than or equal to 0"),
        ("name: 'a/b'\n", ":1: name: String should match pattern"),
        ("paint: [1, 2\n", "invalid YAML"),
        ("- 1\n- 2\n", ":1: expected a mapping of settings, got list"),
    ],
)
def test_bad_config_names_file_line_and_field(tmp_path, text, expected):
    assert expected in _error(tmp_path, text)


def test_missing_config_file(tmp_path):
    with pytest.raises(UserError, match="file not found"):
        load_loop_config(tmp_path / "nope.yaml")


def test_empty_file_means_all_defaults(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("")
    assert load_loop_config(path) == LoopConfig()


def test_prompt_template_builds_prompt():
    config = LoopConfig.model_validate({"prompt": {"prefix": "an engraving of ", "suffix": ", 1890"}})
    assert config.prompt.build("a cat on a roof") == "an engraving of a cat on a roof, 1890"

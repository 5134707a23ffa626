"""Shared fixtures: tiny real models (built once per machine into the Zoetrope cache) and fakes."""

from __future__ import annotations

import os

# Never reach for the Hub in tests: an uncached Hub id must fail at once, not retry for 30 s.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

import zoetrope.film.engines  # noqa: E402,F401  the engines register the specs the scene schema reads


@pytest.fixture(scope="session")
def cpu():
    from zoetrope.stages.device import pick_device

    return pick_device("cpu")


@pytest.fixture(scope="session")
def tiny_painter(cpu):
    from zoetrope.stages.models import load_painter, quiet_libraries

    quiet_libraries()
    return load_painter("tiny", cpu)


@pytest.fixture(scope="session")
def tiny_captioner(cpu):
    from zoetrope.stages.models import load_captioner, quiet_libraries

    quiet_libraries()
    return load_captioner("tiny", cpu)

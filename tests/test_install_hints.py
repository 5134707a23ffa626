"""Issue 31: no message or doc sends a user to a package this project does not own.

`zoetrope` on PyPI is someone else's project, so every install hint must be the editable install of this
checkout into its `.venv` (zoetrope.base.extras.install_hint). The scan covers the package's sources (its
messages), the README, docs/, scripts/ and bench/.
"""

from __future__ import annotations

import re
from pathlib import Path

import tomllib

from zoetrope.base.extras import EXTRAS, install_hint

ROOT = Path(__file__).resolve().parents[1]
PIP = re.compile(r"pip3? install[^\n`\"]*")
# Allowed: the checkout's own editable install (the README's first command, an extra), the pinned CPU torch,
# and the benchmark's pinned peer installed beside the venv for comparison only.
ALLOWED = (
    re.compile(r"^pip install -e (\.|'\.\[[a-z,]+\]'|'\.\[\{extra\}\]'|'\.\[EXTRA\]')(?=\s|$|\)|&&)"),  # {extra}: install_hint
    re.compile(r"^pip install -q --disable-pip-version-check -e '\.\[test\]'"),
    re.compile(r"^pip install torch==\d"),
    re.compile(r"^pip install --no-deps --target \.venv/bench-sdv stable-diffusion-videos==[\d.]+"),
)


def bad_hints(text: str) -> list[str]:
    """Every `pip install ...` in `text` that is not run by the checkout's .venv/bin/pip in an allowed form."""
    bad = []
    for match in PIP.finditer(text):
        before = text[max(0, match.start() - 10):match.start()]
        hint = match.group(0).strip()
        if not before.endswith(".venv/bin/") or not any(rule.match(hint) for rule in ALLOWED):
            bad.append((before + hint).strip())
    return bad


def scanned() -> list[Path]:
    files = [ROOT / "README.md", *ROOT.glob("docs/*.md"), *ROOT.glob("scripts/*.sh"), *ROOT.glob("bench/*.py")]
    return files + sorted((ROOT / "zoetrope").rglob("*.py"))


def test_the_scan_catches_a_strangers_package_and_a_bare_pip():
    assert [hint.endswith("pip install zoetrope[similarity]") for hint in bad_hints(
        "run `pip install zoetrope[similarity]` first")] == [True]
    assert bad_hints("install it with pip install -e '.[motion]'")  # outside the .venv
    assert bad_hints(".venv/bin/pip install librosa")  # a bare package name the project does not own
    assert not bad_hints(f"needs scikit-image: {install_hint('motion')}")


def test_no_message_or_doc_names_a_package_the_project_does_not_own():
    found = {str(p.relative_to(ROOT)): bad for p in scanned() if (bad := bad_hints(p.read_text(encoding="utf-8")))}
    assert not found, found


def test_the_hint_names_every_extra_of_pyproject_and_the_name_is_ours():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert set(EXTRAS) == set(project["optional-dependencies"])
    assert project["name"] != "zoetrope"  # PyPI's zoetrope is an unrelated project
    assert install_hint("ray") == ".venv/bin/pip install -e '.[ray]'"

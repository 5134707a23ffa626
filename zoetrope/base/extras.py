"""How to install an optional extra: the one command every message and doc names.

Zoetrope is not on PyPI (`zoetrope` there is someone else's project), so a hint never names a distribution:
it is the editable install of this checkout into its own `.venv`, exactly as the README sets it up, run from
the checkout's root. tests/test_install_hints.py holds every message and doc to this form.
"""

# The [project.optional-dependencies] of pyproject.toml (tests/test_install_hints.py checks they agree).
EXTRAS = ("test", "ray", "audio", "motion", "esrgan", "similarity")


def install_hint(extra: str) -> str:
    """The shell command, one line, that installs `extra` into the checkout's `.venv`."""
    if extra not in EXTRAS:
        raise ValueError(f"unknown extra {extra!r}; the extras are {', '.join(EXTRAS)}")
    return f".venv/bin/pip install -e '.[{extra}]'"

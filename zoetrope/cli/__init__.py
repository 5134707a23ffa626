"""The command line: the only code that parses argv, prints for humans, installs signal handlers and exits."""

import zoetrope.film.engines  # noqa: E402,F401  the engines register their specs, which check and render read

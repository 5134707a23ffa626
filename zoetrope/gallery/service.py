"""The room as systemd sees it: the unit files `install-service` writes, and what `loop --service` does
when systemd starts it again over a chain folder that already holds a chain.

Torch-free and quick to import: the gallery machine runs these at boot. The text of the units is made
here, the command line only prints or writes it.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from zoetrope.base.errors import UserError
from zoetrope.base.files import write_durable
from zoetrope.loop.session import ServiceStart, service_start

REPO = Path(__file__).resolve().parents[2]  # the checkout that holds run_loop.py (zoetrope/gallery/service.py)
__all__ = ["ServiceStart", "room_units", "service_files", "service_start", "write_units"]
UNIT_NAMES = ("zoetrope-loop.service", "zoetrope-display.service", "zoetrope-kiosk.service")
DESKTOP_NAME = "zoetrope-kiosk.desktop"


# ------------------------------------------------------------------------------------------ a restart
# What `loop --service` does with a folder that already holds a chain is the loop room's (loop/session.py), which
# `loop` cannot import from here (rooms import downward); the names stay here for the unit tests and callers.


# --------------------------------------------------------------------------------------------- units


def service_files(config: Path, chain: Path, port: int, models: str | None, python: str, repo: Path,
                  watchdog_sec: int) -> dict[str, str]:
    """The room's units: the loop (Type=notify, watchdog, restarts), the display server, the kiosk browser,
    and a desktop autostart entry (the alternative to the kiosk unit). Paths are used as given."""
    q = shlex.quote
    models_opt = f" --models {q(models)}" if models else ""
    url = f"http://127.0.0.1:{port}/"
    loop = f"""[Unit]
Description=Zoetrope gallery loop (caption <-> paint, resumed after every restart)
StartLimitIntervalSec=3600
StartLimitBurst=30

[Service]
Type=notify
NotifyAccess=main
WorkingDirectory={repo}
Environment=PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
ExecStart={q(python)} {q(str(repo / 'run_loop.py'))} loop {q(str(config))} --out {q(str(chain))} --service{models_opt}
Restart=always
RestartSec=10
RestartSteps=5
RestartMaxDelaySec=300
# The loop sends WATCHDOG=1 after each step and while it waits: longer than the slowest step.
WatchdogSec={watchdog_sec}
TimeoutStartSec=900
# SIGTERM finishes the step in progress; allow it time.
TimeoutStopSec=120

[Install]
WantedBy=default.target
"""
    display = f"""[Unit]
Description=Zoetrope kiosk display server
After=zoetrope-loop.service

[Service]
WorkingDirectory={repo}
ExecStart={q(python)} {q(str(repo / 'run_loop.py'))} serve --latest {q(str(chain.parent))} --port {port}
Restart=always
RestartSec=5

[Install]
WantedBy=default.target
"""
    # One browser command for both ways of starting it (a user service, or a desktop autostart entry)
    browser = ("/usr/bin/chromium --kiosk --noerrdialogs --disable-infobars --no-first-run "
               "--disable-session-crashed-bubble --disable-component-update --check-for-update-interval=31536000 "
               f"--autoplay-policy=no-user-gesture-required {url}")
    kiosk = f"""[Unit]
Description=Zoetrope kiosk browser (full screen)
After=graphical-session.target zoetrope-display.service
PartOf=graphical-session.target

[Service]
ExecStart={browser}
Restart=always
RestartSec=5

[Install]
WantedBy=graphical-session.target
"""
    desktop = f"""[Desktop Entry]
Type=Application
Name=Zoetrope kiosk
Comment=Full-screen Zoetrope display (use this or zoetrope-kiosk.service, not both)
Exec={browser}
X-GNOME-Autostart-enabled=true
"""
    return dict(zip((*UNIT_NAMES, DESKTOP_NAME), (loop, display, kiosk, desktop), strict=True))


def room_units(config_path: Path, chain: Path, port: int, models: str | None, python: str,
               repo: Path = REPO) -> dict[str, str]:
    """The units for a loop config, which is loaded now: a broken config fails at install, not at boot.
    Relative paths are made absolute (systemd starts the units from another directory)."""
    from zoetrope.settings.loop import load_loop_config

    if not 1 <= port <= 65535:
        raise UserError(f"--port: must be 1..65535 (got {port})")
    config = load_loop_config(config_path)
    chain = chain if chain.is_absolute() else Path.cwd() / chain
    return service_files(config_path.resolve(), chain, port, models, python, repo, config.service.watchdog_sec)


def write_units(files: dict[str, str], unit_dir: Path, autostart_dir: Path) -> list[Path]:
    """Write the units to `unit_dir` and the desktop entry to `autostart_dir` (`~` expanded); the paths written."""
    written = []
    for name, text in files.items():
        folder = (autostart_dir if name.endswith(".desktop") else unit_dir).expanduser()
        folder.mkdir(parents=True, exist_ok=True)
        write_durable(folder / name, text.encode())  # a unit is whole or absent, never half written
        written.append(folder / name)
    return written

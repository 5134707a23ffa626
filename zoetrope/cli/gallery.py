"""Gallery commands: `serve` (the kiosk display) and `install-service` (systemd units for the room), plus
the helpers `loop --display` uses.

Parsing and printing only: the server is zoetrope/gallery/serve.py, the unit files and what a service
restart does are zoetrope/gallery/service.py. Torch-free: `serve` starts in well under a second.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from zoetrope.base.errors import UserError

log = logging.getLogger(__name__)

DEFAULT_PORT = 8765


def add_display_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"display port (default {DEFAULT_PORT})")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1; anything else opens the display to the LAN)")


def register(sub) -> None:
    p = sub.add_parser("serve", help="full-screen kiosk display of a chain, with /status and /healthz")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--chain", type=Path, metavar="DIR", help="the chain folder to show")
    which.add_argument("--latest", nargs="?", const=Path("renders/chains"), type=Path, metavar="ROOT",
                       help="follow the newest chain under ROOT (default renders/chains)")
    p.add_argument("--config", type=Path, metavar="YAML",
                   help="loop config whose `display` settings to use (default: the chain's logged config)")
    add_display_options(p)
    p.set_defaults(func=cmd_serve)

    s = sub.add_parser("install-service", help="print (or --write) systemd units for the loop, display and kiosk")
    s.add_argument("config", type=Path, help="loop config YAML the service runs")
    s.add_argument("--chain", type=Path, default=Path("renders/chains/gallery"), metavar="DIR",
                   help="the chain folder (resumed on every restart; default renders/chains/gallery)")
    s.add_argument("--port", type=int, default=DEFAULT_PORT)
    s.add_argument("--models", metavar="SPEC", help="as for `loop --models`")
    s.add_argument("--write", action="store_true", help="write the files instead of printing them")
    s.add_argument("--dir", type=Path, default=Path("~/.config/systemd/user"), help="where --write puts the units")
    s.add_argument("--autostart-dir", type=Path, default=Path("~/.config/autostart"),
                   help="where --write puts the desktop autostart entry (the alternative to the kiosk unit)")
    s.set_defaults(func=cmd_install_service)


def warn_if_open(host: str) -> None:
    from zoetrope.gallery.serve import is_loopback

    if not is_loopback(host):
        print(f"warning: the display listens on {host}: anyone on the network can see it and its /status. "
              "Use 127.0.0.1 unless the kiosk browser runs on another machine.", file=sys.stderr)


def display_settings_for(folder: Path | None, config_path: Path | None):
    from zoetrope.loop.chainlog import LOG_NAME, read_header
    from zoetrope.settings.loop import LoopConfig, load_loop_config

    if config_path is not None:
        return load_loop_config(config_path)
    if folder is not None and (folder / LOG_NAME).is_file():
        return LoopConfig.model_validate(read_header(folder)["config"])
    return LoopConfig()


def cmd_serve(args) -> int:
    """Check the chain and the config, bind the port (a taken one is one line, exit 2), and only then say
    where the display is and serve it."""
    from zoetrope.gallery.serve import bind_display, create_app, serve_forever
    from zoetrope.loop.chainlog import LOG_NAME

    if args.chain is not None and not (args.chain / LOG_NAME).is_file():
        what = "a file, not a chain folder" if args.chain.is_file() else "not a chain folder (no chain.jsonl)"
        raise UserError(f"{args.chain}: {what}")
    if args.latest is not None and not args.latest.is_dir():
        raise UserError(f"--latest {args.latest}: " + ("a file, not a folder" if args.latest.is_file()
                                                          else "no such folder"))
    config = display_settings_for(args.chain, args.config)
    app = create_app(args.chain, latest_root=args.latest, config=config)
    sock = bind_display(args.host, args.port)
    try:
        warn_if_open(args.host)
        print(f"display on http://{args.host}:{sock.getsockname()[1]}/ (status: /status, health: /healthz)",
              flush=True)
        serve_forever(app, sock)
    finally:
        sock.close()
    return 0


def start_display(folder: Path, config, sock, state=None):
    """`loop --display`: the kiosk server in a background thread of the loop process, on the socket that
    `loop_display()`'s bind took before the models loaded (so a taken port never costs a load or a header)."""
    from zoetrope.gallery.serve import ServerThread, create_app

    host, port = sock.getsockname()[:2]
    warn_if_open(host)
    app = create_app(folder, config=config, loop_state=(lambda: state.as_dict()) if state is not None else None)
    server = ServerThread(app, sock=sock).start()
    print(f"display on http://{host}:{port}/", flush=True)
    return server


def loop_display():
    """The display as `loop --display` runs it (zoetrope/loop/session.py's DisplayHooks): the loop room cannot
    import the gallery's server, so the command line hands it over."""
    from zoetrope.gallery.serve import bind_display
    from zoetrope.loop.session import DisplayHooks

    return DisplayHooks(bind=bind_display, start=start_display)


def cmd_install_service(args: argparse.Namespace) -> int:
    from zoetrope.cli.options import parse_models
    from zoetrope.gallery.service import room_units, write_units

    parse_models(args.models)  # a malformed --models fails now, not at boot
    files = room_units(args.config, args.chain, args.port, args.models, sys.executable)
    if not args.write:
        for name, text in files.items():
            print(f"# ---- {name}\n{text}")
        print("# write them with --write; then see docs/gallery.md (systemctl --user enable ...)")
        return 0
    from zoetrope.base.files import check_writable

    for folder in (args.dir, args.autostart_dir):  # both folders checked before either is written
        if folder is not None:
            check_writable(Path(folder).expanduser(), folder=True)
    for path in write_units(files, args.dir, args.autostart_dir):
        print(f"wrote {path}")
    print("next: systemctl --user daemon-reload && systemctl --user enable --now zoetrope-loop zoetrope-display "
          "zoetrope-kiosk; loginctl enable-linger $USER (start on boot without a login)")
    return 0

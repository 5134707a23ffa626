#!/usr/bin/env python3
"""Zoetrope's entry point: `python run_loop.py --help`."""

import sys

from zoetrope.cli.main import main

if __name__ == "__main__":
    sys.exit(main())

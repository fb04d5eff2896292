"""`python -m refstream.streams.cli`: the old spelling of the `refstream` command, kept for
scripts and tests that run it so; the CLI lives in cli/ (refstream.cli.main)."""

from __future__ import annotations

import sys

from refstream.cli.main import main
from refstream.streams.exit_codes import EXIT_DEAD_LETTERS, EXIT_OK, EXIT_USAGE

__all__ = ["EXIT_DEAD_LETTERS", "EXIT_OK", "EXIT_USAGE", "main"]

if __name__ == "__main__":
    sys.exit(main())

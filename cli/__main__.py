"""`python -m refstream.cli`: the `refstream` command without its console script.
Owns nothing else: it calls `refstream.cli.main.main` and exits with its code."""

import sys

from refstream.cli.main import main

sys.exit(main())

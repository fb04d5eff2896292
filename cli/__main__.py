"""`python -m refstream.cli`: the `refstream` command without its console script."""

import sys

from refstream.cli.main import main

sys.exit(main())

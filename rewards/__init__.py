"""refstream.rewards"""

from refstream.tools.native import prefer_native

prefer_native("rewards", __path__)

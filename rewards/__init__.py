"""refstream.rewards"""

from refstream.schemas.native import prefer_native

prefer_native("rewards", __path__)

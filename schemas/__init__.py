"""refstream.schemas"""

from refstream.tools.native import prefer_native

prefer_native("schemas", __path__)

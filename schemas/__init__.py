"""refstream.schemas"""

from refstream.schemas.native import prefer_native

prefer_native("schemas", __path__)

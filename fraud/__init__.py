"""refstream.fraud"""

from refstream.schemas.native import prefer_native

prefer_native("fraud", __path__)

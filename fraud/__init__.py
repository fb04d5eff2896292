"""refstream.fraud"""

from refstream.tools.native import prefer_native

prefer_native("fraud", __path__)

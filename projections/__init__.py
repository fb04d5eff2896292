"""refstream.projections"""

from refstream.tools.native import prefer_native

prefer_native("projections", __path__)

"""refstream.projections"""

from refstream.schemas.native import prefer_native

prefer_native("projections", __path__)

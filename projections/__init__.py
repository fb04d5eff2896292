"""The pure core's per-shop pipeline (attribution -> fraud -> rewards) folding the canonical
log into state and derived events, and the read model's tables with the event -> row mapping."""

from refstream.tools.native import prefer_native

prefer_native("projections", __path__)

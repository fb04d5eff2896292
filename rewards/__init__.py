"""The reward side of the pure core: versioned rules (YAML validated by pydantic), reward
eligibility and amounts, and the ledger with holds, reversals, caps and tiers."""

from refstream.tools.native import prefer_native

prefer_native("rewards", __path__)

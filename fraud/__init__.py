"""Fraud signals of the pure core: velocity windows, multi-accounting, self-referral,
broadcasting and return abuse, each flag with its evidence. Pure; imports only schemas."""

from refstream.tools.native import prefer_native

prefer_native("fraud", __path__)

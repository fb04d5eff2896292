"""The event contract: Avro schemas (every version), event dataclasses and shop pydantic models,
the status vocabularies, the single-object wire codec, compatibility checks, pseudonymisation
and JSON Lines."""

from refstream.tools.native import prefer_native

prefer_native("schemas", __path__)

"""Avro schema-resolution compatibility: can a reader schema read what a writer wrote?

BACKWARD_TRANSITIVE means every version can read data written by every earlier version;
the whole log is replayed with the newest reader, so this is checked for every pair.
"""

from __future__ import annotations

from typing import Any

_PROMOTIONS = {
    "int": {"int", "long", "float", "double"},
    "long": {"long", "float", "double"},
    "float": {"float", "double"},
    "string": {"string", "bytes"},
    "bytes": {"bytes", "string"},
}


def _type_name(schema: Any) -> str:
    if isinstance(schema, str):
        return schema
    if isinstance(schema, list):
        return "union"
    return str(schema["type"])


def _branches(schema: Any) -> list[Any]:
    return schema if isinstance(schema, list) else [schema]


def incompatibilities(writer: Any, reader: Any, path: str = "") -> list[str]:
    """Why `reader` cannot read data written with `writer` (empty list: it can)."""
    w_type, r_type = _type_name(writer), _type_name(reader)
    if w_type == "union":
        # Every branch the writer may have used must be readable.
        problems: list[str] = []
        for branch in _branches(writer):
            problems += incompatibilities(branch, reader, path)
        return problems
    if r_type == "union":
        for branch in _branches(reader):
            if not incompatibilities(writer, branch, path):
                return []
        return [f"{path or '<root>'}: no branch of the reader union reads writer type {w_type}"]
    if w_type in _PROMOTIONS or r_type in _PROMOTIONS:
        if r_type in _PROMOTIONS.get(w_type, {w_type}):
            return []
        return [f"{path or '<root>'}: writer {w_type} cannot be read as {r_type}"]
    if w_type != r_type:
        return [f"{path or '<root>'}: writer {w_type} cannot be read as {r_type}"]
    if w_type == "record":
        return _record_problems(writer, reader, path)
    if w_type == "enum":
        missing = set(writer["symbols"]) - set(reader["symbols"])
        if missing and "default" not in reader:
            return [f"{path}: reader enum lacks symbols {sorted(missing)} and has no default"]
        return []
    if w_type == "array":
        return incompatibilities(writer["items"], reader["items"], f"{path}[]")
    if w_type == "map":
        return incompatibilities(writer["values"], reader["values"], f"{path}{{}}")
    return []


def _record_problems(writer: dict[str, Any], reader: dict[str, Any], path: str) -> list[str]:
    problems: list[str] = []
    writer_fields = {f["name"]: f for f in writer["fields"]}
    for field in reader["fields"]:
        where = f"{path}.{field['name']}" if path else field["name"]
        if field["name"] in writer_fields:
            problems += incompatibilities(writer_fields[field["name"]]["type"], field["type"],
                                          where)
        elif "default" not in field:
            problems.append(f"{where}: added without a default, so old data cannot fill it")
    return problems

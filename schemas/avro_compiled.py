"""Avro binary encoders and decoders compiled per schema version: the codec's fast path.

fastavro interprets the parsed schema for every record (about 15 µs a record here); these
functions are generated once per shipped schema version, with each field's read or write
inlined (as `dataclasses` generates `__init__`). They cover the types refstream's schemas
use (string, long, int, bytes, enum, array of strings, a union of null and string) and
only the common case: a value they do not take as it is (a wrong type, an out-of-range
number, bytes that end early, a negative length, invalid UTF-8) raises `NotCompiled`,
and the codec then runs fastavro, which gives the bytes, the record or the error it gave
before. So the fast path changes speed only: property tests hold it to fastavro's bytes
and records, and `tests/conformance` to Apache Avro's Java encoder.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1
INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


class NotCompiled(Exception):
    """The compiled path does not take this value or these bytes; run the reference path."""


def long_bytes(value: int) -> bytes:
    """Avro's zig-zag varint of a long (what fastavro's write_long writes)."""
    if not INT64_MIN <= value <= INT64_MAX:
        raise NotCompiled
    n = (value << 1) ^ (value >> 63)
    if n >> 35 and not n >> 42:  # epoch milliseconds, every record has some: 6 bytes
        return bytes((n & 0x7F | 0x80, n >> 7 & 0x7F | 0x80, n >> 14 & 0x7F | 0x80,
                      n >> 21 & 0x7F | 0x80, n >> 28 & 0x7F | 0x80, n >> 35))
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def read_long(data: bytes, pos: int) -> tuple[int, int]:
    """(long, position after it) at `pos`; NotCompiled past 10 bytes or 64 bits."""
    n = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        n |= (byte & 0x7F) << shift
        if not byte & 0x80:
            break
        shift += 7
        if shift > 63:
            raise NotCompiled
    if n >> 64:
        raise NotCompiled
    return (n >> 1) ^ -(n & 1), pos


def read_length(data: bytes, pos: int) -> tuple[int, int]:
    """A string's, bytes' or block's length: a long that may not be negative."""
    n, pos = read_long(data, pos)
    if n < 0:
        raise NotCompiled
    return n, pos


# -- code generation ------------------------------------------------------------------------

def _kind(avro_type: Any) -> str | None:
    """The compiled kinds of field; None for a type this module does not compile."""
    if avro_type in ("string", "long", "int", "bytes"):
        return str(avro_type)
    if avro_type == ["null", "string"]:
        return "optional string"
    if isinstance(avro_type, dict):
        if avro_type.get("type") == "array" and avro_type.get("items") == "string":
            return "string array"
        if avro_type.get("type") == "enum":
            return "enum"
        if avro_type.get("type") in ("string", "long", "int", "bytes"):
            return _kind(avro_type["type"])
    return None


def _kinds(declared: dict[str, Any]) -> list[tuple[str, str, Any]] | None:
    found = []
    for spec in declared["fields"]:
        kind = _kind(spec["type"])
        if kind is None:
            return None
        found.append((spec["name"], kind, spec["type"]))
    return found


def _write_string(lines: list[str], expression: str, indent: str) -> None:
    lines += [f"{indent}x = {expression}.encode()",
              f"{indent}n = len(x)",
              f"{indent}if n < 64:",
              f"{indent}    out.append(n << 1)",
              f"{indent}else:",
              f"{indent}    out += long_bytes(n)",
              f"{indent}out += x"]


def _write_long(lines: list[str], expression: str, low: int, high: int) -> None:
    lines += [f"x = {expression}",
              "if -64 <= x < 64:",
              "    out.append(((x << 1) ^ (x >> 63)) & 0x7F)",
              f"elif {low} <= x <= {high}:",
              "    out += long_bytes(x)",
              "else:",
              "    raise NotCompiled"]


def compile_encoder(declared: dict[str, Any], header: bytes,
                    getters: dict[str, str] | None = None
                    ) -> Callable[[Any], bytes] | None:
    """`encode(value) -> header + Avro body` reading each field as an attribute of `value`
    (`getters` names another attribute for a field), or None if a field's type is not
    compiled. Raises NotCompiled for a value it does not take as it is."""
    kinds = _kinds(declared)
    if kinds is None:
        return None
    namespace: dict[str, Any] = {"long_bytes": long_bytes, "NotCompiled": NotCompiled,
                                 "HEADER": header}
    lines = ["def encode(value):", "    out = bytearray(HEADER)"]
    body: list[str] = []
    for index, (name, kind, avro_type) in enumerate(kinds):
        attribute = (getters or {}).get(name, name)
        if not attribute.isidentifier():
            return None
        expression = f"value.{attribute}"
        if kind == "string":
            _write_string(body, expression, "")
        elif kind == "optional string":
            body += [f"y = {expression}", "if y is None:", "    out.append(0)", "else:",
                     "    out.append(2)"]
            _write_string(body, "y", "    ")
        elif kind == "long":
            _write_long(body, expression, INT64_MIN, INT64_MAX)
        elif kind == "int":
            _write_long(body, expression, INT32_MIN, INT32_MAX)
        elif kind == "bytes":
            body += [f"x = {expression}", "if type(x) is not bytes:", "    raise NotCompiled",
                     "out += long_bytes(len(x))", "out += x"]
        elif kind == "enum":
            namespace[f"SYMBOLS_{index}"] = {s: i for i, s in enumerate(avro_type["symbols"])}
            body += [f"out += long_bytes(SYMBOLS_{index}[{expression}])"]
        elif kind == "string array":
            body += [f"items = {expression}", "if type(items) not in (list, tuple):",
                     "    raise NotCompiled", "if items:", "    out += long_bytes(len(items))",
                     "    for item in items:"]
            _write_string(body, "item", "        ")
            body += ["out.append(0)"]
    lines += ["    " + line for line in body]
    lines += ["    return bytes(out)"]
    exec("\n".join(lines), namespace)  # generated from a shipped schema only
    encode: Callable[[Any], bytes] = namespace["encode"]
    encode.__doc__ = f"Avro body of {declared.get('name')}, compiled:\n" + "\n".join(lines)
    return encode


def _read_string(lines: list[str], target: str, indent: str, decode: bool = True) -> None:
    conversion = ".decode()" if decode else ""
    lines += [f"{indent}b = data[pos]",
              f"{indent}if b < 0x80 and not b & 1:",
              f"{indent}    pos += 1",
              f"{indent}    end = pos + (b >> 1)",
              f"{indent}else:",
              f"{indent}    n, pos = read_length(data, pos)",
              f"{indent}    end = pos + n",
              f"{indent}{target} = data[pos:end]{conversion}",
              f"{indent}pos = end"]


def compile_decoder(declared: dict[str, Any], build: type[Any] | None = None,
                    tuple_fields: frozenset[str] = frozenset()
                    ) -> Callable[[bytes, int], Any] | None:
    """`decode(data, pos)`: the record whose body starts at `pos` and ends exactly at the end
    of `data` (a dict like fastavro's; with `build`, `build(**record)`, the `tuple_fields`
    as tuples), or None if a field's type is not compiled. Raises NotCompiled (or
    IndexError / UnicodeDecodeError) for bytes it does not read as they are."""
    kinds = _kinds(declared)
    if kinds is None:
        return None
    namespace: dict[str, Any] = {"read_long": read_long, "read_length": read_length,
                                 "NotCompiled": NotCompiled, "BUILD": build}
    body: list[str] = []
    for index, (_, kind, avro_type) in enumerate(kinds):
        target = f"f{index}"
        if kind in ("string", "bytes"):
            _read_string(body, target, "", decode=kind == "string")
        elif kind == "optional string":
            body += ["b = data[pos]", "pos += 1", "if b == 0:", f"    {target} = None",
                     "elif b == 2:"]
            _read_string(body, target, "    ")
            body += ["else:", "    raise NotCompiled"]
        elif kind in ("long", "int"):
            low, high = (INT32_MIN, INT32_MAX) if kind == "int" else (INT64_MIN, INT64_MAX)
            body += ["b = data[pos]", "if b < 0x80:", "    pos += 1",
                     f"    {target} = (b >> 1) ^ -(b & 1)", "else:",
                     f"    {target}, pos = read_long(data, pos)"]
            if kind == "int":
                body += [f"    if not {low} <= {target} <= {high}:", "        raise NotCompiled"]
        elif kind == "enum":
            namespace[f"SYMBOLS_{index}"] = tuple(avro_type["symbols"])
            body += ["i, pos = read_length(data, pos)", f"{target} = SYMBOLS_{index}[i]"]
        elif kind == "string array":
            body += [f"{target} = []", "count, pos = read_long(data, pos)", "while count:",
                     "    if count < 0:", "        count = -count",
                     "        _, pos = read_long(data, pos)", "    for _ in range(count):"]
            _read_string(body, "item", "        ")
            body += [f"        {target}.append(item)", "    count, pos = read_long(data, pos)"]
    body += ["if pos != len(data):", "    raise NotCompiled"]
    names = [name for name, _, _ in kinds]
    if build is None:
        items = ", ".join(f"{name!r}: f{i}" for i, name in enumerate(names))
        body += [f"return {{{items}}}"]
    else:
        arguments = ", ".join(
            f"{name}=tuple(f{i})" if name in tuple_fields else f"{name}=f{i}"
            for i, name in enumerate(names))
        if not all(name.isidentifier() for name in names):
            return None
        body += [f"return BUILD({arguments})"]
    lines = ["def decode(data, pos):", *("    " + line for line in body)]
    exec("\n".join(lines), namespace)  # generated from a shipped schema only
    decode: Callable[[bytes, int], Any] = namespace["decode"]
    decode.__doc__ = f"Avro body of {declared.get('name')}, compiled:\n" + "\n".join(lines)
    return decode

"""Avro binary encoders and decoders compiled per schema version: the codec's fast path.

fastavro interprets the parsed schema for every record (about 15 µs a record here); these
functions are generated once per shipped schema version, with each field's read or write
inlined (as `dataclasses` generates `__init__`), as typed Python text: the codec `exec`s
it, or runs the same text compiled with mypyc at build time (`module_source`, built by
tools/native.py), about three times faster. They cover the types refstream's schemas use
(string, long, int, bytes, enum, array of strings, a union of null and string) and only
the common case: a value they do not take as it is (a wrong type, an out-of-range number,
bytes that end early, a negative length, invalid UTF-8) raises `NotCompiled` (compiled, a
wrong type raises the TypeError of its declared type), and the codec then runs fastavro,
which gives the bytes, the record or the error it gave before. So the fast path changes
speed only: property tests hold both builds to fastavro's bytes and records, and
`tests/conformance` to Apache Avro's Java encoder.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1
INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
# Each one-byte varint (a short string's length, a small long, a union branch) as bytes: the
# encoders collect pieces and join them once.
ONE_BYTE: tuple[bytes, ...] = tuple(bytes((i,)) for i in range(128))


# Text fields whose few values repeat from record to record (a shop's id, its currency, a
# campaign's tags, the user agents and landing pages of its links): their decoders hand out
# one string per distinct value instead of a new one per record, so records waiting in
# ingest's event-time merge, and the core's state, hold each such value once. A pool keeps
# the first SHARED_TEXTS_LIMIT distinct values of its field; later ones are decoded as usual.
SHARED_TEXT_FIELDS = frozenset({"event_type", "shop_id", "currency", "channel", "campaign_id",
                                "utm_source", "utm_medium", "utm_campaign", "user_agent",
                                "landing_url"})
SHARED_TEXTS_LIMIT = 1024


class NotCompiled(Exception):
    """The compiled path does not take this value or these bytes; run the reference path."""


class SharedTexts(dict[str, str]):
    """One decoder field's pool of shared strings (a plain dict in the compiled module)."""


def shared_text(texts: dict[str, str], text: str) -> str:
    """The pooled string equal to `text`, pooling `text` itself while the pool has room."""
    known = texts.get(text)
    if known is not None:
        return known
    if len(texts) < SHARED_TEXTS_LIMIT:
        texts[text] = text
    return text


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
# Each function is generated as typed Python text: `exec`'d as it is (the annotations of
# locals are not evaluated), or written into one module that tools/native.py compiles with
# mypyc, where the declared types (`data: bytes`, `pos: int`, `v0: str`) let mypyc emit
# native operations. Every local holds one type: a field's variables carry its index.


@dataclass(frozen=True)
class Generated:
    """One generated function: its name, its source lines and the constants it reads."""

    name: str
    lines: tuple[str, ...]
    constants: dict[str, Any]

    @property
    def digest(self) -> str:
        """What the function computes (its text and constants): a compiled function of the
        same name is used in place of this one only if it was built with the same digest."""
        named = sorted((key, _constant_text(value)) for key, value in self.constants.items())
        return hashlib.sha256(repr((self.lines, named)).encode()).hexdigest()

    def compile(self) -> Callable[..., Any]:
        """The function itself, `exec`'d (generated from a shipped schema only)."""
        namespace: dict[str, Any] = {"long_bytes": long_bytes, "read_long": read_long,
                                     "read_length": read_length, "shared_text": shared_text,
                                     "NotCompiled": NotCompiled,
                                     "ONE_BYTE": ONE_BYTE, "Any": Any, **self.constants}
        text = "\n".join(self.lines)
        exec(text, namespace)
        function: Callable[..., Any] = namespace[self.name]
        function.__doc__ = f"Compiled:\n{text}"
        return function


def _constant_text(value: Any) -> str:
    if isinstance(value, SharedTexts):
        return "SharedTexts()"  # what it holds is not what the function computes
    if isinstance(value, type):
        return f"{value.__module__}.{value.__qualname__}"
    return repr(value)


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


def _write_string(lines: list[str], variable: str, suffix: str, indent: str) -> None:
    lines += [f"{indent}x{suffix} = {variable}.encode()",
              f"{indent}n{suffix} = len(x{suffix})",
              f"{indent}if n{suffix} < 64:",
              f"{indent}    out.append(ONE_BYTE[n{suffix} << 1])",
              f"{indent}else:",
              f"{indent}    out.append(long_bytes(n{suffix}))",
              f"{indent}out.append(x{suffix})"]


def _write_long(lines: list[str], variable: str, low: int, high: int) -> None:
    lines += [f"if -64 <= {variable} < 64:",
              f"    out.append(ONE_BYTE[(({variable} << 1) ^ ({variable} >> 63)) & 0x7F])",
              f"elif {low} <= {variable} <= {high}:",
              f"    out.append(long_bytes({variable}))",
              "else:",
              "    raise NotCompiled"]


def _read_typed(lines: list[str], variable: str, expression: str, python_type: str,
                indent: str = "") -> None:
    # The declared type makes mypyc check the value (a TypeError if it is not one); the
    # explicit check makes the exec'd function refuse exactly the same values (NotCompiled),
    # rather than take anything with an `encode` method or a `<<` operator.
    lines += [f"{indent}{variable}: {python_type} = {expression}"]
    if python_type == "str | None":
        lines += [f"{indent}if {variable} is not None and not isinstance({variable}, str):"]
    else:
        lines += [f"{indent}if not isinstance({variable}, {python_type}):"]
    lines += [f"{indent}    raise NotCompiled"]


def encoder_source(declared: dict[str, Any], header: bytes,
                   getters: dict[str, str] | None = None, name: str = "encode"
                   ) -> Generated | None:
    """The source of `name(value) -> header + Avro body`, reading each field as an
    attribute of `value` (`getters` names another attribute for a field), or None if a
    field's type is not compiled. The function raises NotCompiled (or the TypeError of a
    declared type) for a value it does not take as it is."""
    kinds = _kinds(declared)
    if kinds is None:
        return None
    header_name = f"HEADER_{name}"
    constants: dict[str, Any] = {header_name: header}
    body = [f"out = [{header_name}]"]
    for index, (field, kind, avro_type) in enumerate(kinds):
        attribute = (getters or {}).get(field, field)
        if not attribute.isidentifier():
            return None
        variable, read = f"v{index}", f"value.{attribute}"
        if kind == "string":
            _read_typed(body, variable, read, "str")
            _write_string(body, variable, str(index), "")
        elif kind == "optional string":
            _read_typed(body, variable, read, "str | None")
            body += [f"if {variable} is None:",
                     "    out.append(ONE_BYTE[0])", "else:",
                     "    out.append(ONE_BYTE[2])"]
            _write_string(body, variable, str(index), "    ")
        elif kind in ("long", "int"):
            _read_typed(body, variable, read, "int")
            if kind == "int":
                _write_long(body, variable, INT32_MIN, INT32_MAX)
            else:
                _write_long(body, variable, INT64_MIN, INT64_MAX)
        elif kind == "bytes":
            body += [f"{variable}: bytes = {read}", f"if type({variable}) is not bytes:",
                     "    raise NotCompiled", f"out.append(long_bytes(len({variable})))",
                     f"out.append({variable})"]
        elif kind == "enum":
            symbols = f"SYMBOLS_{name}_{index}"
            constants[symbols] = {s: i for i, s in enumerate(avro_type["symbols"])}
            _read_typed(body, variable, read, "str")
            body += [f"out.append(long_bytes({symbols}[{variable}]))"]
        elif kind == "string array":
            body += [f"{variable}: Any = {read}",
                     f"if type({variable}) not in (list, tuple):", "    raise NotCompiled",
                     f"if {variable}:", f"    out.append(long_bytes(len({variable})))",
                     f"    for e{index} in {variable}:"]
            _read_typed(body, f"w{index}", f"e{index}", "str", "        ")
            _write_string(body, f"w{index}", f"{index}", "        ")
            body += ["out.append(ONE_BYTE[0])"]
    lines = [f"def {name}(value: Any) -> bytes:", *("    " + line for line in body),
             "    return b\"\".join(out)"]
    return Generated(name, tuple(lines), constants)


def compile_encoder(declared: dict[str, Any], header: bytes,
                    getters: dict[str, str] | None = None
                    ) -> Callable[[Any], bytes] | None:
    """`encode(value) -> header + Avro body`, `exec`'d from `encoder_source`, or None if a
    field's type is not compiled. Raises NotCompiled for a value it does not take as it is."""
    source = encoder_source(declared, header, getters)
    return None if source is None else source.compile()


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


def decoder_source(declared: dict[str, Any], build: type[Any] | None = None,
                   tuple_fields: frozenset[str] = frozenset(), name: str = "decode",
                   shared_fields: frozenset[str] = SHARED_TEXT_FIELDS) -> Generated | None:
    """The source of `name(data, pos)`: the record whose body starts at `pos` and ends
    exactly at the end of `data` (a dict like fastavro's; with `build`, `build(**record)`,
    the `tuple_fields` as tuples), or None if a field's type is not compiled. The text
    values of `shared_fields` come from a pool of the function's own (`shared_text`). The
    function raises NotCompiled (or IndexError / UnicodeDecodeError) for bytes it does not
    read as they are."""
    kinds = _kinds(declared)
    if kinds is None:
        return None
    names = [field for field, _, _ in kinds]
    if build is not None and not all(field.isidentifier() for field in names):
        return None
    constants: dict[str, Any] = {}
    body: list[str] = []
    for index, (field, kind, avro_type) in enumerate(kinds):
        target = f"f{index}"
        pool = f"SHARED_{name}_{index}"
        if kind in ("string", "optional string") and field in shared_fields:
            constants[pool] = SharedTexts()
        if kind in ("string", "bytes"):
            _read_string(body, target, "", decode=kind == "string")
            if pool in constants:
                body.append(f"{target} = shared_text({pool}, {target})")
        elif kind == "optional string":
            body += [f"{target}: str | None = None", "b = data[pos]", "pos += 1",
                     "if b == 2:"]
            _read_string(body, target, "    ")
            if pool in constants:
                body.append(f"    {target} = shared_text({pool}, {target})")
            body += ["elif b != 0:", "    raise NotCompiled"]
        elif kind in ("long", "int"):
            body += ["b = data[pos]", "if b < 0x80:", "    pos += 1",
                     f"    {target} = (b >> 1) ^ -(b & 1)", "else:",
                     f"    {target}, pos = read_long(data, pos)"]
            if kind == "int":
                body += [f"    if not {INT32_MIN} <= {target} <= {INT32_MAX}:",
                         "        raise NotCompiled"]
        elif kind == "enum":
            symbols = f"SYMBOLS_{name}_{index}"
            constants[symbols] = tuple(avro_type["symbols"])
            body += ["symbol, pos = read_length(data, pos)", f"{target} = {symbols}[symbol]"]
        elif kind == "string array":
            body += [f"{target}: list[str] = []", "count, pos = read_long(data, pos)",
                     "while count:", "    if count < 0:", "        count = -count",
                     "        _, pos = read_long(data, pos)", "    for _ in range(count):"]
            _read_string(body, "item", "        ")
            body += [f"        {target}.append(item)", "    count, pos = read_long(data, pos)"]
    body += ["if pos != len(data):", "    raise NotCompiled"]
    if build is None:
        items = ", ".join(f"{field!r}: f{i}" for i, field in enumerate(names))
        body += [f"return {{{items}}}"]
        returns = "dict[str, Any]"
    else:
        constants[f"BUILD_{name}"] = build
        arguments = ", ".join(
            f"{field}=tuple(f{i})" if field in tuple_fields else f"{field}=f{i}"
            for i, field in enumerate(names))
        body += [f"return BUILD_{name}({arguments})"]
        returns = "Any"
    lines = [f"def {name}(data: bytes, pos: int) -> {returns}:",
             *("    " + line for line in body)]
    return Generated(name, tuple(lines), constants)


def compile_decoder(declared: dict[str, Any], build: type[Any] | None = None,
                    tuple_fields: frozenset[str] = frozenset()
                    ) -> Callable[[bytes, int], Any] | None:
    """`decode(data, pos)`, `exec`'d from `decoder_source`, or None if a field's type is
    not compiled."""
    source = decoder_source(declared, build, tuple_fields)
    return None if source is None else source.compile()


def module_source(functions: list[Generated], doc: str) -> str:
    """One typed module holding `functions`, their constants, the varint helpers above and
    `DIGESTS` (each function's digest), for mypyc to compile."""
    imports: list[str] = []
    constants: list[str] = []
    for function in functions:
        for key, value in sorted(function.constants.items()):
            if isinstance(value, type):
                imports.append(f"from {value.__module__} import {value.__qualname__} "
                               f"as _{key}")
                constants.append(f"{key}: Final[Any] = _{key}")
            elif isinstance(value, SharedTexts):
                constants.append(f"{key}: Final[dict[str, str]] = {{}}")
            elif isinstance(value, bytes):
                constants.append(f"{key}: Final[bytes] = {value!r}")
            elif isinstance(value, dict):
                constants.append(f"{key}: Final[dict[str, int]] = {value!r}")
            else:
                constants.append(f"{key}: Final[tuple[str, ...]] = {tuple(value)!r}")
    digests = ", ".join(f"{f.name!r}: {f.digest!r}" for f in functions)
    head = [f'"""{doc}"""', "", "from __future__ import annotations", "",
            "from typing import Any, Final", "",
            "from refstream.schemas.avro_compiled import NotCompiled", *imports, "",
            f"INT64_MIN: Final = {INT64_MIN}", f"INT64_MAX: Final = {INT64_MAX}",
            f"SHARED_TEXTS_LIMIT: Final = {SHARED_TEXTS_LIMIT}",
            "ONE_BYTE: Final[tuple[bytes, ...]] = tuple(bytes((i,)) for i in range(128))",
            *constants, f"DIGESTS: Final[dict[str, str]] = {{{digests}}}"]
    parts = ["\n".join(head)]
    parts += [inspect.getsource(helper)
              for helper in (long_bytes, read_long, read_length, shared_text)]
    parts += ["\n".join(function.lines) for function in functions]
    return "\n\n\n".join(parts) + "\n"

"""The compiled core: the pure core's own modules built with mypyc, used when they are current.

The attribution, fraud and reward modules are plain typed Python. `make install` also
compiles them with mypyc (`python -m refstream.tools.native build`) into `build/native/`,
stamped with a hash of the sources they came from. Each core package calls `prefer_native`
from its `__init__`: when the stamp matches the sources on disk, the compiled directory goes
first on the package's `__path__`, so `import refstream.projections.pipeline` loads the
extension; otherwise (no compiler, an edited source, an installed wheel without a build
tree, or REFSTREAM_PURE_PYTHON=1) the Python sources load, with identical behaviour
(tests/unit/core/test_native.py runs one log through both and compares the outputs).

The codec's fast path is compiled the same way, as its own module: `schema_compiled_source`
(schemas/codec.py) generates the typed encoders and decoders of every newest shipped schema
version into `refstream.schemas.avro_native`, built into `build/native-avro/` with its own
stamp (the `.avsc` files, the generator and the codec). `refstream.schemas` puts it on its path
only while that stamp is current; otherwise the codec `exec`s the same generated functions.

Only this project's own source files are compiled; nothing else changes at run time.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Callable
from pathlib import Path
from typing import Final

# The hot path of `Pipeline.apply`, in dependency order. Events, codecs and the rules
# (pydantic) stay interpreted: they are built once, or decoded by C libraries already.
NATIVE_MODULES: Final = (
    "schemas/ids.py",
    "schemas/partitioning.py",
    "fraud/identity.py",
    "fraud/policy.py",
    "fraud/windows.py",
    "fraud/signals.py",
    "rewards/eligibility.py",
    "rewards/ledger.py",
    "projections/state.py",
    "projections/step.py",
    "projections/timers.py",
    "projections/attribution.py",
    "projections/referrals.py",
    "projections/pipeline.py",
)
# Packages the compiled modules import without being compiled: staged for mypyc's type check.
IMPORTED_PACKAGES: Final = ("persistence", "tools")
_CORE_PACKAGES: Final = {name.split("/")[0] for name in NATIVE_MODULES} | set(IMPORTED_PACKAGES)
PURE_ENV: Final = "REFSTREAM_PURE_PYTHON"
# One shared runtime library for the group, inside a package the loader already extends.
GROUP_NAME: Final = "refstream.projections.native"

SOURCE_ROOT: Final = Path(__file__).resolve().parent.parent
BUILD_ROOT: Final = SOURCE_ROOT / "build" / "native"
STAMP: Final = BUILD_ROOT / "SOURCES.sha256"
# The codec's schema-compiled module: generated, so it has no source file of its own; what
# it is generated from is its stamp's input.
AVRO_MODULE: Final = "refstream.schemas.avro_native"
AVRO_GENERATOR: Final = ("schemas/avro_compiled.py", "schemas/codec.py")
AVRO_BUILD_ROOT: Final = SOURCE_ROOT / "build" / "native-avro"
AVRO_STAMP: Final = AVRO_BUILD_ROOT / "SOURCES.sha256"


def _digest(root: Path, names: list[str]) -> str:
    digest = hashlib.sha256(sysconfig.get_config_var("EXT_SUFFIX").encode())
    for name in names:
        digest.update(name.encode())
        digest.update((root / name).read_bytes())
    return digest.hexdigest()


def fingerprint() -> str:
    """A hash of the compiled modules' sources and of this Python's ABI."""
    return _digest(SOURCE_ROOT, list(NATIVE_MODULES))


def avro_fingerprint(root: Path = SOURCE_ROOT) -> str:
    """A hash of what the codec's compiled module is generated from: every shipped `.avsc`
    file, the generator and the codec (which functions, with which headers), and the ABI."""
    schemas = sorted(f"schemas/avro/{p.name}" for p in (root / "schemas" / "avro").glob("*.avsc"))
    return _digest(root, [*schemas, *AVRO_GENERATOR])


def _stamp_matches(stamp: Path, expected: Callable[[], str]) -> bool:
    if os.environ.get(PURE_ENV):
        return False
    try:
        return stamp.read_text().strip() == expected()
    except OSError:
        return False


def current() -> bool:
    """The compiled core exists and was built from exactly the sources on disk."""
    return _stamp_matches(STAMP, fingerprint)


def avro_current() -> bool:
    """The codec's compiled module exists and was generated from exactly the schemas and
    generator on disk."""
    return _stamp_matches(AVRO_STAMP, avro_fingerprint)


_CURRENT: bool | None = None
_AVRO_CURRENT: bool | None = None


def prefer_native(package: str, path: list[str]) -> None:
    """Put the compiled modules of `package` (e.g. "projections") ahead of its sources."""
    global _CURRENT, _AVRO_CURRENT  # noqa: PLW0603 - checked once per process
    if _CURRENT is None:
        _CURRENT = current()
    if _CURRENT:
        compiled = BUILD_ROOT / "refstream" / package
        if compiled.is_dir() and str(compiled) not in path:
            path.insert(0, str(compiled))
    if package == "schemas":
        if _AVRO_CURRENT is None:
            _AVRO_CURRENT = avro_current()
        compiled = AVRO_BUILD_ROOT / "refstream" / "schemas"
        if _AVRO_CURRENT and compiled.is_dir() and str(compiled) not in path:
            path.append(str(compiled))  # it adds a module only: never ahead of the sources


def active() -> bool:
    """The pipeline module in use is the compiled one."""
    from refstream.projections import pipeline

    return not str(pipeline.__file__).endswith(".py")


def _mypyc(stage: Path, build_root: Path, paths: list[str], group: str | None,
           quiet: bool) -> bool:
    """Compile `paths` (staged under `stage`) with mypyc into `build_root`."""
    options = f", group_name={group!r}" if group else ""
    script = (
        "from setuptools import setup\n"
        "from mypyc.build import mypycify\n"
        f"setup(name='refstream-native', ext_modules=mypycify({paths!r}, opt_level='3'"
        f"{options}),\n"
        f"      script_args=['build_ext', '--build-lib', {str(build_root)!r},\n"
        f"                   '--build-temp', {str(stage / 'tmp')!r}])\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=stage, capture_output=quiet,
                            text=True, check=False)
    shutil.rmtree(stage, ignore_errors=True)
    if result.returncode != 0 and quiet:
        sys.stderr.write(result.stdout[-4000:] + result.stderr[-4000:])
    return result.returncode == 0


def _stage(stage: Path, packages: set[str]) -> None:
    # mypyc names modules by their path: stage the sources under refstream/ as installed.
    shutil.rmtree(stage, ignore_errors=True)
    for package in sorted(packages):
        shutil.copytree(SOURCE_ROOT / package, stage / "refstream" / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    (stage / "refstream" / "__init__.py").write_text("")


def _have_compiler() -> bool:
    return shutil.which(os.environ.get("CC", "cc")) is not None


def _build(what: str, runs_instead: str, *, build_root: Path, stamp_file: Path,
           stage_name: str, staged: Callable[[Path], tuple[str, list[str]]],
           group: str | None, quiet: bool) -> int:
    """Stage the sources (`staged` returns the stamp and the module paths to compile),
    compile them into `build_root`, stamp it; 0 on success, 1 if it could not be done."""
    if not _have_compiler():
        print(f"refstream native build: no C compiler; {runs_instead}", file=sys.stderr)
        return 1
    stage = SOURCE_ROOT / "build" / stage_name
    shutil.rmtree(build_root, ignore_errors=True)
    stamp, modules = staged(stage)
    if not _mypyc(stage, build_root, modules, group, quiet):
        print(f"refstream native build of {what} failed; {runs_instead}", file=sys.stderr)
        shutil.rmtree(build_root, ignore_errors=True)
        return 1
    stamp_file.write_text(stamp + "\n")
    return 0


def build(quiet: bool = True) -> int:
    """Compile NATIVE_MODULES into build/native; 0 on success, 1 if it could not be done."""
    def staged(stage: Path) -> tuple[str, list[str]]:
        _stage(stage, _CORE_PACKAGES)
        return fingerprint(), [f"refstream/{m}" for m in NATIVE_MODULES]

    return _build("the core", "the core runs as Python", build_root=BUILD_ROOT,
                  stamp_file=STAMP, stage_name="native-src", staged=staged, group=GROUP_NAME,
                  quiet=quiet)


def build_avro(quiet: bool = True) -> int:
    """Generate the codec's fast path from the shipped schemas and compile it into
    build/native-avro; 0 on success, 1 if it could not be done (the codec then `exec`s it)."""
    from refstream.schemas.codec import schema_compiled_source

    def staged(stage: Path) -> tuple[str, list[str]]:
        # The generated module imports the codec's error type and the event dataclasses,
        # and mypyc type-checks it against them: the packages they import are staged too.
        _stage(stage, _CORE_PACKAGES)
        module = stage / (AVRO_MODULE.replace(".", "/") + ".py")
        module.write_text(schema_compiled_source())
        return avro_fingerprint(), [str(module.relative_to(stage))]

    return _build("the codec", "its fast path runs exec'd", build_root=AVRO_BUILD_ROOT,
                  stamp_file=AVRO_STAMP, stage_name="native-avro-src", staged=staged,
                  group=None, quiet=quiet)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args == ["build"]:
        return build() | build_avro()
    if args == ["ensure"]:
        code = 0
        if not current():
            print("refstream: compiling the core with mypyc (about 30 s; `make install` "
                  "repeats it only when a compiled source changes)", file=sys.stderr)
            code |= build()
        if not avro_current():
            print("refstream: compiling the codec's fast path with mypyc (about a minute; "
                  "repeated only when a schema or its generator changes)", file=sys.stderr)
            code |= build_avro()
        return code
    if args == ["status"]:
        state = "compiled (mypyc), current" if current() else "Python sources"
        print(f"refstream core: {state}")
        codec = "compiled (mypyc), current" if avro_current() else "exec'd Python"
        print(f"refstream codec fast path: {codec}")
        return 0
    print("usage: refstream.tools.native.main([build|ensure|status])", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())

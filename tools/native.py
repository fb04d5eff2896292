"""The compiled core: the pure core's own modules built with mypyc, used when they are current.

The attribution, fraud and reward modules are plain typed Python. `make install` also
compiles them with mypyc (`python -m refstream.tools.native build`) into `build/native/`,
stamped with a hash of the sources they came from. Each core package calls `prefer_native`
from its `__init__`: when the stamp matches the sources on disk, the compiled directory goes
first on the package's `__path__`, so `import refstream.projections.pipeline` loads the
extension; otherwise (no compiler, an edited source, an installed wheel without a build
tree, or REFSTREAM_PURE_PYTHON=1) the Python sources load, with identical behaviour
(tests/unit/core/test_native.py runs one log through both and compares the outputs).

Only this project's own source files are compiled; nothing else changes at run time.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Final

# The hot path of `Pipeline.apply`, in dependency order. Events, codecs and the rules
# (pydantic) stay interpreted: they are built once, or decoded by C libraries already.
NATIVE_MODULES: Final = (
    "schemas/ids.py",
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
PURE_ENV: Final = "REFSTREAM_PURE_PYTHON"
# One shared runtime library for the group, inside a package the loader already extends.
GROUP_NAME: Final = "refstream.projections.native"

SOURCE_ROOT: Final = Path(__file__).resolve().parent.parent
BUILD_ROOT: Final = SOURCE_ROOT / "build" / "native"
STAMP: Final = BUILD_ROOT / "SOURCES.sha256"


def fingerprint() -> str:
    """A hash of the compiled modules' sources and of this Python's ABI."""
    digest = hashlib.sha256(sysconfig.get_config_var("EXT_SUFFIX").encode())
    for name in NATIVE_MODULES:
        digest.update(name.encode())
        digest.update((SOURCE_ROOT / name).read_bytes())
    return digest.hexdigest()


def current() -> bool:
    """The compiled core exists and was built from exactly the sources on disk."""
    if os.environ.get(PURE_ENV):
        return False
    try:
        return STAMP.read_text().strip() == fingerprint()
    except OSError:
        return False


_CURRENT: bool | None = None


def prefer_native(package: str, path: list[str]) -> None:
    """Put the compiled modules of `package` (e.g. "projections") ahead of its sources."""
    global _CURRENT  # noqa: PLW0603 - checked once per process, for every core package
    if _CURRENT is None:
        _CURRENT = current()
    if _CURRENT:
        compiled = BUILD_ROOT / "refstream" / package
        if compiled.is_dir() and str(compiled) not in path:
            path.insert(0, str(compiled))


def active() -> bool:
    """The pipeline module in use is the compiled one."""
    from refstream.projections import pipeline

    return not str(pipeline.__file__).endswith(".py")


def build(quiet: bool = True) -> int:
    """Compile NATIVE_MODULES into build/native; 0 on success, 1 if it could not be done."""
    if shutil.which(os.environ.get("CC", "cc")) is None:
        print("refstream native build: no C compiler; the core runs as Python",
              file=sys.stderr)
        return 1
    stage = SOURCE_ROOT / "build" / "native-src"
    shutil.rmtree(stage, ignore_errors=True)
    shutil.rmtree(BUILD_ROOT, ignore_errors=True)
    # mypyc names modules by their path: stage the sources under refstream/ as installed.
    for package in sorted({name.split("/")[0] for name in NATIVE_MODULES}
                          | set(IMPORTED_PACKAGES)):
        shutil.copytree(SOURCE_ROOT / package, stage / "refstream" / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    (stage / "refstream" / "__init__.py").write_text("")
    stamp = fingerprint()
    script = (
        "import sys\n"
        "from setuptools import setup\n"
        "from mypyc.build import mypycify\n"
        f"paths = [f'refstream/{{m}}' for m in {list(NATIVE_MODULES)!r}]\n"
        f"setup(name='refstream-native', ext_modules=mypycify(paths, opt_level='3', "
        f"group_name={GROUP_NAME!r}),\n"
        f"      script_args=['build_ext', '--build-lib', {str(BUILD_ROOT)!r},\n"
        f"                   '--build-temp', {str(stage / 'tmp')!r}])\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=stage, capture_output=quiet,
                            text=True, check=False)
    shutil.rmtree(stage, ignore_errors=True)
    if result.returncode != 0:
        if quiet:
            sys.stderr.write(result.stdout[-4000:] + result.stderr[-4000:])
        print("refstream native build failed; the core runs as Python", file=sys.stderr)
        shutil.rmtree(BUILD_ROOT, ignore_errors=True)
        return 1
    STAMP.write_text(stamp + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args == ["build"]:
        return build()
    if args == ["ensure"]:
        if current():
            return 0
        print("refstream: compiling the core with mypyc (about 30 s; `make install` "
              "repeats it only when a compiled source changes)", file=sys.stderr)
        return build()
    if args == ["status"]:
        state = "compiled (mypyc), current" if current() else "Python sources"
        print(f"refstream core: {state}")
        return 0
    print("usage: refstream.tools.native.main([build|ensure|status])", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())

"""Builds and runs the Java conformance program (tests/conformance/java) with Maven and Java 17.

The first build downloads Apache Avro and kafka-clients from Maven Central into ~/.m2; later
builds are offline-friendly (Maven reuses the local repository) and skipped while no source
changed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

JAVA_DIR = Path(__file__).resolve().parent / "java"
AVRO_DIR = Path(__file__).resolve().parents[2] / "schemas" / "avro"
_STAMP = JAVA_DIR / "target" / "refstream-built"


class JavaProgramError(RuntimeError):
    """The Java program could not be built or failed; the message carries its output."""


def _sources() -> list[Path]:
    return [JAVA_DIR / "pom.xml", *sorted((JAVA_DIR / "src").rglob("*.java"))]


def build() -> Path:
    """The program's classpath, building it first when a source is newer than the build."""
    if shutil.which("mvn") is None or shutil.which("java") is None:
        raise JavaProgramError("the conformance program needs Maven (mvn) and Java 17 on PATH")
    newest = max(p.stat().st_mtime for p in _sources())
    if not _STAMP.exists() or _STAMP.stat().st_mtime < newest:
        done = subprocess.run(
            ["mvn", "-q", "-B", "-f", str(JAVA_DIR / "pom.xml"), "package",
             "dependency:copy-dependencies", "-DskipTests"],
            capture_output=True, text=True, timeout=900, check=False)
        if done.returncode != 0:
            raise JavaProgramError(f"mvn package failed:\n{done.stdout[-4000:]}\n"
                                   f"{done.stderr[-4000:]}")
        _STAMP.touch()
    return _STAMP.parent


def run(*args: str, timeout: float = 300) -> list[dict[str, Any]]:
    """Runs `Conformance args...`; its JSON Lines output, or JavaProgramError with stderr."""
    done = subprocess.run(["java", "-cp", classpath(), "io.refstream.conformance.Conformance",
                           *args], capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise JavaProgramError(f"Conformance {args[0]} exited {done.returncode}:\n"
                               f"{done.stderr[-6000:]}")
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def classpath() -> str:
    target = build()
    return f"{target / 'classes'}:{target / 'dependency'}/*"


def example(main_class: str, *args: str) -> subprocess.Popen[str]:
    """Starts one of the documented examples (`PublishShopEvent`, `ReadRewardDue`) as its own
    JVM, its standard output a pipe; the caller waits for or stops it."""
    return subprocess.Popen(["java", "-cp", classpath(), f"io.refstream.conformance.{main_class}",
                             *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

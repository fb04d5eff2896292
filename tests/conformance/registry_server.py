"""Builds and runs a real Confluent-compatible schema registry (tests/conformance/registry).

The registry is Apicurio Registry, assembled by Maven from Maven Central (the pom says why two
of its dependencies are swapped); it keeps its schemas in memory, so every session starts empty.
Its Confluent REST API is served under /apis/ccompat/v6. The first build downloads the jars into
~/.m2; later builds are skipped while no source changed.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from refstream.deploy.kafka_launcher import free_ports

REGISTRY_DIR = Path(__file__).resolve().parent / "registry"
_STAMP = REGISTRY_DIR / "target" / "refstream-built"
CONFLUENT_API = "/apis/ccompat/v6"


class RegistryServerError(RuntimeError):
    """The registry could not be built or did not start; the message carries its output."""


def _sources() -> list[Path]:
    return [REGISTRY_DIR / "pom.xml", *sorted((REGISTRY_DIR / "src").rglob("*.java"))]


def build() -> Path:
    """The registry's runner jar, building it first when a source is newer than the build."""
    if shutil.which("mvn") is None or shutil.which("java") is None:
        raise RegistryServerError("the test registry needs Maven (mvn) and Java 17 on PATH")
    newest = max(p.stat().st_mtime for p in _sources())
    if not _STAMP.exists() or _STAMP.stat().st_mtime < newest:
        done = subprocess.run(
            ["mvn", "-q", "-B", "-f", str(REGISTRY_DIR / "pom.xml"), "package", "-DskipTests"],
            capture_output=True, text=True, timeout=1200, check=False)
        if done.returncode != 0:
            raise RegistryServerError(f"mvn package of the test registry failed:\n"
                                      f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
        _STAMP.touch()
    return REGISTRY_DIR / "target" / "refstream-test-registry-1-runner.jar"


class RegistryServer:
    """One registry process on a free port; `url` is its Confluent API base."""

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.port = free_ports(1)[0]
        self.url = f"http://127.0.0.1:{self.port}{CONFLUENT_API}"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 180.0) -> RegistryServer:
        jar = build()
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(
                ["java", "-Xmx384m", f"-Dquarkus.http.port={self.port}",
                 "-Dquarkus.http.host=127.0.0.1", "-jar", str(jar)],
                stdout=log, stderr=subprocess.STDOUT, cwd=jar.parent)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RegistryServerError(f"the test registry exited "
                                          f"{self._process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/subjects", timeout=2) as answer:
                    if answer.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.5)
        self.stop()
        raise RegistryServerError(f"the test registry did not answer on {self.url} within "
                                  f"{timeout_s:.0f}s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    def log_tail(self, chars: int = 6000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

"""Session fixtures of the conformance tests: a real Confluent-compatible schema registry."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.conformance.registry_server import RegistryServer


@pytest.fixture(scope="session")
def schema_registry_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The Confluent API base of a registry: REFSTREAM_TEST_SCHEMA_REGISTRY_URL when it names
    one, else a registry this session builds (Maven) and starts on a free port, schemas in
    memory, stopped at the end of the session."""
    given = os.environ.get("REFSTREAM_TEST_SCHEMA_REGISTRY_URL", "")
    if given:
        yield given
        return
    server = RegistryServer(tmp_path_factory.mktemp("registry") / "registry.log").start()
    try:
        yield server.url
    finally:
        server.stop()

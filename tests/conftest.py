"""Fixtures shared by the test modules: the fixture repository, a server on it, stubs to it, and the
repository the bench tests measure. Helpers to import live in tests/fixtures/ (never in a test module)."""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from contract import MODEL_FILE, MODELS, model_dir
from fixtures.service_repository import build_repository
from fixtures.service_servers import Stubs, connect, running_server
from service.server import AdderServer


@pytest.fixture(scope="session")
def fixture_repository(tmp_path_factory) -> Path:
    """Both builds, correct, with real sha256: a repository the server must accept."""
    return build_repository(tmp_path_factory.mktemp("repository"))


@pytest.fixture(scope="module")
def server(fixture_repository) -> Iterator[AdderServer]:
    with running_server(fixture_repository) as running:
        yield running


@pytest.fixture
def stubs(server) -> Iterator[Stubs]:
    with connect(server.port) as connected:
        yield connected


@pytest.fixture(scope="module")
def measured_repository(tmp_path_factory) -> Path:
    """The exported models when ADDER_MODEL_REPOSITORY has them (make test), else the fixture adders."""
    real = Path(os.environ.get("ADDER_MODEL_REPOSITORY", "/nonexistent"))
    if all((model_dir(real, m) / MODEL_FILE).is_file() for m in MODELS):
        return real
    return build_repository(tmp_path_factory.mktemp("repository"))

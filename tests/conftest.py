"""Fixtures shared by every package's tests: the reference recordings and a scratch dataset."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from pipeline.data import read_labels, shared_data_dir  # noqa: E402
from pipeline.dataset import Dataset  # noqa: E402
from pipeline.objectstore import S3Server, start_seaweedfs  # noqa: E402


@pytest.fixture(scope="session")
def data_dir():
    path = shared_data_dir()
    if path is None:
        pytest.skip("reference recordings absent: set CANTOLAB_DATA to the folder with gtsinger/ and ravdess_song/")
    return path


@pytest.fixture(scope="session")
def gtsinger(data_dir):
    return read_labels("gtsinger", data_dir)


@pytest.fixture(scope="session")
def ravdess(data_dir):
    return read_labels("ravdess_song", data_dir)


@pytest.fixture
def tmp_dataset(tmp_path):
    return Dataset(tmp_path / "dataset")


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory) -> S3Server:
    """A real S3 server (SeaweedFS `weed mini`) on 127.0.0.1, free ports, its own data folder."""
    server = start_seaweedfs(tmp_path_factory.mktemp("seaweedfs"), buckets=("cantolab-test",))
    yield server
    server.stop()


@pytest.fixture
def s3_env(s3_server, monkeypatch) -> dict[str, str]:
    """The standard AWS_* variables (and the endpoint override) pointing at the test S3 server."""
    env = s3_server.env()
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def s3_dataset(s3_env, tmp_path) -> Dataset:
    """An empty dataset under its own prefix of the test bucket."""
    return Dataset(f"s3://cantolab-test/{tmp_path.name}")

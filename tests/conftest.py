"""Fixtures shared by every package's tests: the reference recordings and a scratch dataset."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from pipeline.data import read_labels, shared_data_dir  # noqa: E402
from pipeline.dataset import Dataset  # noqa: E402


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

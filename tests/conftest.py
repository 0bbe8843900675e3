"""Fixtures shared by every package's tests: the reference recordings and a scratch dataset.

Under CI (`CI` set to true/1/yes) a skip is a failure: a test that skips because a real part is
missing (the reference recordings, Whisper weights, Label Studio, Chromium, jackd, a device) has
not tested anything, and CI must not pass on it. Locally the skip stays, with its reason (`-ra`).
A skip that is legitimate everywhere (e.g. a GPU-only check on a CPU machine) carries the
`skip_ok` marker, with the reason it is fine: `@pytest.mark.skip_ok("needs a CUDA device")`.
"""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from pipeline.data import read_labels, shared_data_dir  # noqa: E402
from pipeline.dataset import Dataset  # noqa: E402
from pipeline.objectstore import S3Server, start_seaweedfs  # noqa: E402

NO_DATA = "reference recordings absent: set CANTOLAB_DATA to the folder with gtsinger/ and ravdess_song/"


def under_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes", "on"}


def pytest_configure(config):
    config.addinivalue_line("markers", "skip_ok(reason): a skip of this test is legitimate everywhere, CI included (say why)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under CI, a skipped test (in setup or in its body) is reported as failed, with the skip's reason."""
    outcome = yield
    report = outcome.get_result()
    if not (report.skipped and under_ci()) or hasattr(report, "wasxfail") or item.get_closest_marker("skip_ok"):
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    report.outcome = "failed"
    report.longrepr = f"skipped under CI, which must have every real part: {reason.removeprefix('Skipped: ')}"


def pytest_sessionfinish(session, exitstatus):
    """Under CI a run that collected no test is a failure, not exit 5."""
    if under_ci() and exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def data_dir():
    path = shared_data_dir()
    if path is None:
        pytest.skip(NO_DATA)
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

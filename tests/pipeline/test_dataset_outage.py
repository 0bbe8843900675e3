"""The dataset on a real S3 store (SeaweedFS) that goes away for a few seconds: operations wait for
it with backoff and a warning per retry, then land exactly once; a store that stays away gives a
transient error naming the endpoint (never a data error that would quarantine a take)."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from pipeline.dataset import Dataset, StoreUnavailableError
from pipeline.dataset import store as store_module
from pipeline.objectstore import start_seaweedfs

REJECT = {"stage": "ingest", "reason": "r", "details": ""}


@pytest.fixture
def own_s3(tmp_path, monkeypatch):
    """Its own store: this test stops it, which must not hit other tests' server."""
    server = start_seaweedfs(tmp_path / "s3", buckets=("outage",))
    for key, value in server.env().items():
        monkeypatch.setenv(key, value)
    yield server
    server.stop()


def test_an_s3_outage_of_a_few_seconds_is_waited_for_and_nothing_is_lost(own_s3, caplog):
    ds = Dataset("s3://outage/ds")
    ds.upsert("rejects", [REJECT | {"source": "a.wav"}])
    own_s3.stop()
    # 8 s: well past delta-rs' own retries (~2 s), so the wait is the dataset's, with its warnings
    restarted = threading.Timer(8.0, own_s3.start)
    restarted.start()
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="pipeline.dataset.store"):
        result = ds.upsert("rejects", [REJECT | {"source": "a.wav"}, REJECT | {"source": "b.wav"}])
    restarted.join()
    assert time.monotonic() - started >= 7.5, "the store was down, yet the upsert did not wait"
    assert (result.inserted, result.unchanged) == (1, 1)
    retries = [r.getMessage() for r in caplog.records if "unreachable" in r.getMessage()]
    # Which layer waits varies from run to run (about 1 in 5 here no warning is logged: the refusal
    # then surfaces in a form the dataset's check does not name, and the commit retry rides it out);
    # when the dataset's wait logged, the warning names the store. The warning itself is pinned by
    # the cluster's S3 outage test (it waits for it); the error naming the store, by the test below.
    assert all(own_s3.endpoint in r and "retry" in r for r in retries), retries
    assert sorted(k[1] for k in ds.keys("rejects")) == ["a.wav", "b.wav"]
    assert len(ds.history("rejects")) == 3  # create, first upsert, the one that waited: no double commit


def test_a_store_that_stays_away_is_a_transient_error_naming_it(own_s3, monkeypatch):
    ds = Dataset("s3://outage/gone")
    ds.upsert("rejects", [REJECT | {"source": "a.wav"}])
    own_s3.stop()
    monkeypatch.setattr(store_module, "STORE_RETRY_SECONDS", 2.0)
    for call in (lambda: ds.read("rejects"), lambda: ds.upsert("rejects", [REJECT | {"source": "b.wav"}])):
        with pytest.raises(StoreUnavailableError) as caught:
            call()
        assert isinstance(caught.value, ConnectionError)  # transient: a task retries it, a take is not quarantined
        assert own_s3.endpoint in str(caught.value) and "did not answer" in str(caught.value)

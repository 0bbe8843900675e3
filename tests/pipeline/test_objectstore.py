"""The real S3 server fixture (SeaweedFS) and reading recordings from an s3:// prefix."""

from __future__ import annotations

import socket

import pytest

from pipeline.errors import ConfigError
from pipeline.objectstore import arrow_s3_filesystem, delta_storage_options, mirror_prefix


def test_server_listens_on_loopback_only_and_needs_credentials(s3_server):
    host, port = s3_server.endpoint.removeprefix("http://").split(":")
    assert host == "127.0.0.1"
    with socket.create_connection((host, int(port)), timeout=2):
        pass
    import urllib.error
    import urllib.request

    with pytest.raises(urllib.error.HTTPError) as err:  # anonymous listing is refused
        urllib.request.urlopen(f"{s3_server.endpoint}/cantolab-test", timeout=5)
    assert err.value.code in (401, 403)


def test_storage_options_from_the_standard_variables():
    env = {"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s", "CANTOLAB_S3_ENDPOINT": "http://127.0.0.1:9"}
    opts = delta_storage_options(env)
    assert opts["conditional_put"] == "etag" and opts["AWS_ALLOW_HTTP"] == "true"
    assert (opts["AWS_ENDPOINT_URL"], opts["AWS_REGION"], opts["AWS_ACCESS_KEY_ID"]) == ("http://127.0.0.1:9", "us-east-1", "k")
    assert "AWS_ENDPOINT_URL" not in delta_storage_options({"AWS_REGION": "eu-west-1"})


def test_mirror_prefix_fetches_new_and_changed_objects_only(s3_env, tmp_path):
    filesystem = arrow_s3_filesystem()
    objects = {"session-1/take-000.flac": b"fLaC" + b"\1" * 5000, "session-1/take-000.json": b'{"singer": "a"}', "notes.txt": b"x"}
    for key, data in objects.items():
        with filesystem.open_output_stream(f"cantolab-test/{tmp_path.name}/{key}") as out:
            out.write(data)
    dest = mirror_prefix(f"s3://cantolab-test/{tmp_path.name}", tmp_path / "mirror", suffixes=(".flac", ".json"))
    assert sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file()) == [
        "session-1/take-000.flac",
        "session-1/take-000.json",
    ]
    assert (dest / "session-1/take-000.flac").read_bytes() == objects["session-1/take-000.flac"]
    before = (dest / "session-1/take-000.flac").stat().st_mtime_ns
    with filesystem.open_output_stream(f"cantolab-test/{tmp_path.name}/session-1/take-000.json") as out:
        out.write(b'{"singer": "b", "song": "s"}')
    mirror_prefix(f"s3://cantolab-test/{tmp_path.name}", dest, suffixes=(".flac", ".json"))
    assert (dest / "session-1/take-000.flac").stat().st_mtime_ns == before  # unchanged: not fetched again
    assert b'"b"' in (dest / "session-1/take-000.json").read_bytes()
    with pytest.raises(ConfigError, match="not an s3:// URL"):
        mirror_prefix(str(tmp_path), dest)


def test_upload_changed_sends_new_and_changed_files_only(s3_env, tmp_path):
    from pipeline.objectstore import upload_changed

    url = f"s3://cantolab-test/{tmp_path.name}/up"
    src = tmp_path / "models"
    (src / "run-1").mkdir(parents=True)
    (src / "run-1" / "model.bin").write_bytes(b"\0" * 3000)
    (src / "champion.json").write_text('{"run": "run-1"}')
    assert upload_changed(src, url) == ["champion.json", "run-1/model.bin"]
    assert upload_changed(src, url) == []  # unchanged: nothing sent again
    (src / "champion.json").write_text('{"run": "run-2"}')
    assert upload_changed(src, url) == ["champion.json"]
    back = mirror_prefix(url, tmp_path / "back")
    assert (back / "champion.json").read_text() == '{"run": "run-2"}' and (back / "run-1" / "model.bin").stat().st_size == 3000


def test_recordings_mirror_is_per_store_and_drops_objects_gone_from_the_bucket(s3_env, tmp_path, monkeypatch):
    """A take deleted from the bucket, or one from another store with a bucket of the same name, must
    not be ingested again from a stale local copy (the cluster's end-to-end run once read a previous
    store's takes back from the shared mirror)."""
    from pipeline.objectstore import local_recordings

    monkeypatch.setenv("CANTOLAB_RECORDINGS_CACHE", str(tmp_path / "cache"))
    fs = arrow_s3_filesystem()
    base = f"cantolab-test/{tmp_path.name}-rec"
    for name in ("a.flac", "b.flac", "a.json"):
        with fs.open_output_stream(f"{base}/{name}") as out:
            out.write(name.encode())
    first = local_recordings(f"s3://{base}")
    assert sorted(p.name for p in (tmp_path / "cache").rglob("*") if p.is_file()) == ["a.flac", "a.json", "b.flac"]
    assert "127.0.0.1" in first  # the store's endpoint names the folder
    fs.delete_file(f"{base}/b.flac")
    again = local_recordings(f"s3://{base}")
    assert again == first and sorted(p.name for p in (tmp_path / "cache").rglob("*") if p.is_file()) == ["a.flac", "a.json"]

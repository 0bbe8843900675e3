"""The Parquet dataset: round trips, idempotent keyed upserts, crash safety, versions, DuckDB."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import datetime, timezone

import duckdb
import pyarrow.parquet as pq
import pytest

from pipeline.dataset import SCHEMAS, Dataset, DatasetError, add_reject
from pipeline.dataset.info import summarize
from pipeline.records import prepare_take, take_record, whole_clip_record
from pipeline.ids import take_id_for_content


def _labels(n: int, style: str = "pop") -> list[dict]:
    return [
        {"clip_id": f"c{i:03d}", "style": style, "emotion": "sad" if i % 2 else "happy", "resolution": "agreed", "annotators": ["a", "b"]}
        for i in range(n)
    ]


@pytest.fixture
def real_rows(gtsinger):
    takes, clips = [], []
    for _, row in gtsinger.head(4).iterrows():
        prepared = prepare_take(row["abs_path"])
        take_id = take_id_for_content(prepared.audio.sha256)
        takes.append(take_record(take_id, prepared, {"singer": row["singer"], "session": "gtsinger", "song": row["song"]}))
        clips.append(whole_clip_record(take_id, prepared, "gtsinger", row["singer"]))
    return takes, clips


def test_round_trip_of_real_clips_to_arrow_and_pandas(tmp_dataset, real_rows):
    takes, clips = real_rows
    assert tmp_dataset.upsert("takes", takes).inserted == 4
    assert tmp_dataset.upsert("clips", clips).inserted == 4
    table = tmp_dataset.read("clips")
    assert table.schema.equals(SCHEMAS["clips"])
    by_id = {r["clip_id"]: r for r in table.to_pylist()}
    for clip in clips:
        assert by_id[clip["clip_id"]]["audio_flac"] == clip["audio_flac"]
    frame = tmp_dataset.to_pandas("takes")
    assert sorted(frame["take_id"]) == sorted(t["take_id"] for t in takes)
    assert (frame["sample_rate"] == 48000).all()


def test_upsert_twice_is_a_no_op(tmp_dataset, real_rows):
    _, clips = real_rows
    tmp_dataset.upsert("clips", clips)
    files = sorted(p.name for p in (tmp_dataset.root and __import__("pathlib").Path(tmp_dataset.root) / "clips").glob("*.parquet"))
    # New bookkeeping timestamps alone do not make a row different.
    again = [{**c, "created_at": datetime.now(timezone.utc)} for c in clips]
    result = tmp_dataset.upsert("clips", again)
    assert (result.inserted, result.updated, result.unchanged) == (0, 0, 4)
    files_after = sorted(p.name for p in (__import__("pathlib").Path(tmp_dataset.root) / "clips").glob("*.parquet"))
    assert files_after == files
    assert tmp_dataset.count("clips") == 4


def test_changed_rows_replace_old_ones_without_duplicates(tmp_dataset):
    tmp_dataset.upsert("labels", _labels(10))
    result = tmp_dataset.upsert("labels", _labels(3, style="bel canto") + _labels(12)[10:])
    assert (result.inserted, result.updated, result.unchanged) == (2, 3, 0)
    rows = tmp_dataset.read("labels").to_pylist()
    assert len(rows) == 12 and len({r["clip_id"] for r in rows}) == 12
    assert [r["style"] for r in sorted(rows, key=lambda r: r["clip_id"])][:4] == ["bel canto"] * 3 + ["pop"]


def test_bad_rows_are_refused_with_the_table_and_column(tmp_dataset):
    with pytest.raises(DatasetError, match="labels: unknown column"):
        tmp_dataset.upsert("labels", [{"clip_id": "x", "colour": "red"}])
    with pytest.raises(DatasetError, match="key column 'clip_id'"):
        tmp_dataset.upsert("labels", [{"style": "pop"}])
    with pytest.raises(DatasetError, match="appears more than once"):
        tmp_dataset.upsert("labels", _labels(2) + _labels(1))
    with pytest.raises(DatasetError, match="unknown table"):
        tmp_dataset.read("songs")


def _run_crashing_writer(root, body: str) -> subprocess.CompletedProcess:
    script = textwrap.dedent(
        f"""
        import os, signal, resource
        from pipeline.dataset import Dataset
        from pipeline.dataset import store
        ds = Dataset({str(root)!r})
        rows = [{{"clip_id": f"c{{i:03d}}", "style": "bel canto", "emotion": "happy", "resolution": "adjudicated"}} for i in range(20)]
        """
    ) + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)


def test_write_failure_mid_file_leaves_previous_version_intact(tmp_dataset):
    """A real write fault: the file-size limit (RLIMIT_FSIZE) makes the part write fail with EFBIG."""
    tmp_dataset.upsert("labels", _labels(10))
    before = tmp_dataset.read("labels")
    proc = _run_crashing_writer(
        tmp_dataset.root,
        """
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (200, 200))
        try:
            ds.upsert("labels", rows)
        except OSError as exc:
            print("write failed:", exc)
        """,
    )
    assert "write failed" in proc.stdout, proc.stderr
    assert tmp_dataset.read("labels").equals(before)
    assert not list((tmp_dataset.fs.ls(tmp_dataset.root + "/labels", detail=False))) or all(
        ".tmp-" not in p for p in tmp_dataset.fs.ls(tmp_dataset.root + "/labels", detail=False)
    )


def test_sigkill_between_part_and_cleanup_is_read_correctly_and_healed(tmp_dataset):
    """SIGKILL after the new part landed but before old parts were rewritten: no duplicate rows."""
    tmp_dataset.upsert("labels", _labels(10))
    proc = _run_crashing_writer(
        tmp_dataset.root,
        """
        store.Dataset._drop_superseded = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
        ds.upsert("labels", rows)
        """,
    )
    assert proc.returncode == -9
    rows = tmp_dataset.read("labels").to_pylist()
    assert len(rows) == 20 and {r["style"] for r in rows} == {"bel canto"}
    assert tmp_dataset.upsert("labels", []).written == 0
    tmp_dataset.upsert("labels", _labels(1, style="bel canto"))  # any later write heals the stale copies
    con = duckdb.connect()
    n, distinct = con.execute(
        f"select count(*), count(distinct clip_id) from read_parquet('{tmp_dataset.root}/labels/*.parquet')"
    ).fetchone()
    assert n == distinct == 20


def test_sigkill_during_part_write_leaves_previous_version(tmp_dataset):
    tmp_dataset.upsert("labels", _labels(10))
    before = tmp_dataset.read("labels")
    proc = _run_crashing_writer(
        tmp_dataset.root,
        """
        import pyarrow.parquet as pq
        real = pq.write_table
        def half_then_die(table, where, **kw):
            fh = where if hasattr(where, "write") else open(where, "wb")  # the store writes through pipeline.fsio
            fh.write(b"PAR1" + b"\\0" * 100)
            fh.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        store.pq.write_table = half_then_die
        ds.upsert("labels", rows)
        """,
    )
    assert proc.returncode == -9
    assert tmp_dataset.read("labels").equals(before)


def test_duckdb_reads_tables_as_plain_parquet(tmp_dataset):
    tmp_dataset.upsert("labels", _labels(6))
    con = duckdb.connect()
    got = con.execute(
        f"select emotion, count(*) from read_parquet('{tmp_dataset.root}/labels/*.parquet') group by 1 order by 1"
    ).fetchall()
    assert got == [("happy", 3), ("sad", 3)]


def test_schema_versions_newer_and_unsupported_are_refused_clearly(tmp_dataset):
    tmp_dataset.upsert("labels", _labels(2))
    part = next(p for p in tmp_dataset.fs.ls(tmp_dataset.root + "/labels", detail=False) if p.endswith(".parquet"))
    table = pq.read_table(part)
    for version, message in (("2", "newer than this cantolab"), ("0", "no longer reads; re-run ingest")):
        pq.write_table(table.replace_schema_metadata({b"cantolab.schema_version": version.encode()}), part)
        with pytest.raises(DatasetError, match=message) as err:
            tmp_dataset.read("labels")
        assert part in str(err.value)
    pq.write_table(table.replace_schema_metadata({}), part)
    with pytest.raises(DatasetError, match="not written by cantolab"):
        tmp_dataset.read("labels")


def test_older_files_missing_a_nullable_column_read_with_nulls(tmp_dataset):
    tmp_dataset.upsert("labels", _labels(2))
    part = next(p for p in tmp_dataset.fs.ls(tmp_dataset.root + "/labels", detail=False) if p.endswith(".parquet"))
    table = pq.read_table(part)
    pq.write_table(table.drop_columns(["annotators"]).replace_schema_metadata(table.schema.metadata), part)
    read = tmp_dataset.read("labels")
    assert read.schema.equals(SCHEMAS["labels"]) and read.column("annotators").null_count == 2


def test_fsspec_url_dataset(tmp_path):
    ds = Dataset(f"file://{tmp_path}/remote-like")
    ds.upsert("labels", _labels(3))
    assert Dataset(f"file://{tmp_path}/remote-like").count("labels") == 3
    mem = Dataset("memory://cantolab-test")
    mem.upsert("labels", _labels(4))
    mem.upsert("labels", _labels(4))
    assert mem.count("labels") == 4


def test_rejects_and_summary(tmp_dataset, real_rows):
    takes, clips = real_rows
    tmp_dataset.upsert("takes", takes)
    tmp_dataset.upsert("clips", clips)
    tmp_dataset.upsert("labels", [{"clip_id": c["clip_id"], "style": "pop", "emotion": "sad", "resolution": "imported"} for c in clips])
    add_reject(tmp_dataset, "preprocess", "/x/broken.wav", "empty file (0 bytes)")
    add_reject(tmp_dataset, "preprocess", "/x/broken.wav", "empty file (0 bytes)")
    summary = summarize(tmp_dataset)
    assert summary["rows"] == {"takes": 4, "clips": 4, "features": 0, "annotations": 0, "labels": 4, "rejects": 1}
    assert summary["style_x_emotion"] == {"pop × sad": 4}
    assert summary["hours_clips"] == pytest.approx(sum(c["end_s"] for c in clips) / 3600)


def test_compact_merges_parts_and_keeps_every_row(tmp_dataset):
    for i in range(5):
        tmp_dataset.upsert("labels", _labels(12)[i * 2 : i * 2 + 3])
    before = sorted(tmp_dataset.read("labels").to_pylist(), key=lambda r: r["clip_id"])
    assert len(tmp_dataset._parts("labels")) > 1
    assert tmp_dataset.compact("labels") > 1
    assert len(tmp_dataset._parts("labels")) == 1
    assert sorted(tmp_dataset.read("labels").to_pylist(), key=lambda r: r["clip_id"]) == before
    assert tmp_dataset.compact("labels") == 0
    assert tmp_dataset.upsert("labels", before).written == 0  # hashes survive compaction

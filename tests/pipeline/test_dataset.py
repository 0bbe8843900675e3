"""The Delta Lake dataset: round trips, idempotent keyed upserts, versions, crash safety, readers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from pipeline.dataset import SCHEMAS, Dataset, DatasetError, add_reject, parse_versions
from pipeline.dataset.info import summarize
from pipeline.ids import take_id_for_content
from pipeline.records import prepare_take, take_record, whole_clip_record
from tests.legacy_layout import write_legacy_dataset

REPO = Path(__file__).resolve().parents[2]


def _labels(n: int, style: str = "pop") -> list[dict]:
    return [
        {"clip_id": f"c{i:03d}", "style": style, "emotion": "sad" if i % 2 else "happy", "resolution": "agreed", "annotators": ["a", "b"]}
        for i in range(n)
    ]


def _by_id(ds: Dataset, name: str = "labels") -> dict[str, dict]:
    return {r["clip_id"]: r for r in ds.read(name).to_pylist()}


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


def test_upsert_twice_is_a_no_op_and_makes_no_version(tmp_dataset, real_rows):
    _, clips = real_rows
    tmp_dataset.upsert("clips", clips)
    version = tmp_dataset.versions()["clips"]
    # New bookkeeping timestamps alone do not make a row different.
    again = [{**c, "created_at": datetime.now(UTC)} for c in clips]
    result = tmp_dataset.upsert("clips", again)
    assert (result.inserted, result.updated, result.unchanged) == (0, 0, 4)
    assert tmp_dataset.versions()["clips"] == version
    assert tmp_dataset.count("clips") == 4


def test_changed_rows_replace_old_ones_without_duplicates(tmp_dataset):
    tmp_dataset.upsert("labels", _labels(10))
    result = tmp_dataset.upsert("labels", _labels(3, style="bel canto") + _labels(12)[10:])
    assert (result.inserted, result.updated, result.unchanged) == (2, 3, 0)
    rows = tmp_dataset.read("labels").to_pylist()
    assert len(rows) == 12 and len({r["clip_id"] for r in rows}) == 12
    assert [r["style"] for r in sorted(rows, key=lambda r: r["clip_id"])][:4] == ["bel canto"] * 3 + ["pop"]


def test_keys_with_quotes_and_composite_keys(tmp_dataset):
    odd = ["it's", 'say "hi"', "back\\slash", "new\nline", "ünï", "a' OR '1'='1"]
    tmp_dataset.upsert("labels", [{"clip_id": k, "style": "pop"} for k in odd])
    assert tmp_dataset.upsert("labels", [{"clip_id": k, "style": "bel canto"} for k in odd]).updated == len(odd)
    assert {r["clip_id"]: r["style"] for r in tmp_dataset.read("labels").to_pylist()} == dict.fromkeys(odd, "bel canto")
    assert tmp_dataset.delete("labels", [(odd[0],), (odd[-1],)]) == 2
    add_reject(tmp_dataset, "ingest", "/x/it's.wav", "bad")
    add_reject(tmp_dataset, "discover", "/x/it's.wav", "bad")
    assert tmp_dataset.delete("rejects", [("ingest", "/x/it's.wav")]) == 1
    assert tmp_dataset.keys("rejects") == {("discover", "/x/it's.wav")}


def test_bad_rows_are_refused_with_the_table_and_column(tmp_dataset):
    with pytest.raises(DatasetError, match="labels: unknown column"):
        tmp_dataset.upsert("labels", [{"clip_id": "x", "colour": "red"}])
    with pytest.raises(DatasetError, match="key column 'clip_id'"):
        tmp_dataset.upsert("labels", [{"style": "pop"}])
    with pytest.raises(DatasetError, match="appears more than once"):
        tmp_dataset.upsert("labels", _labels(2) + _labels(1))
    with pytest.raises(DatasetError, match="unknown table"):
        tmp_dataset.read("songs")


def test_time_travel_after_update_and_delete(tmp_dataset):
    tmp_dataset.upsert("labels", _labels(4))
    v_first = tmp_dataset.versions()["labels"]
    tmp_dataset.upsert("labels", _labels(2, style="bel canto"))
    tmp_dataset.delete("labels", [("c003",)])
    now = _by_id(tmp_dataset)
    assert set(now) == {"c000", "c001", "c002"} and now["c000"]["style"] == "bel canto"
    past = Dataset(tmp_dataset.root, version={"labels": v_first})
    assert {k: r["style"] for k, r in _by_id(past).items()} == dict.fromkeys(["c000", "c001", "c002", "c003"], "pop")
    assert Dataset(tmp_dataset.root, version=f"labels={v_first + 1}").count("labels") == 4
    with pytest.raises(DatasetError, match="read-only"):
        past.upsert("labels", _labels(1))
    with pytest.raises(DatasetError, match="version 99"):
        Dataset(tmp_dataset.root, version={"labels": 99}).read("labels")
    history = tmp_dataset.history("labels")
    assert [(h["operation"], h["inserted"], h["updated"], h["deleted"]) for h in history[:3]] == [
        ("delete", 0, 0, 1), ("upsert", 0, 2, 0), ("upsert", 4, 0, 0),
    ]  # fmt: skip
    assert parse_versions("clips=3, labels=7") == {"clips": 3, "labels": 7} and parse_versions("5") == 5
    with pytest.raises(DatasetError, match="table=version pairs"):
        parse_versions("clips:3")


def test_vacuum_keeps_files_of_pinned_versions(tmp_dataset):
    tmp_dataset.upsert("labels", _labels(4))
    pinned = tmp_dataset.pin("model-a")
    tmp_dataset.upsert("labels", _labels(4, style="bel canto"))
    unpinned = tmp_dataset.versions()
    tmp_dataset.upsert("labels", _labels(4, style="pop"))
    removed = tmp_dataset.vacuum(retention_hours=0)
    assert removed["labels"] >= 1
    assert {r["style"] for r in Dataset(tmp_dataset.root, version=pinned).read("labels").to_pylist()} == {"pop"}
    with pytest.raises(DatasetError, match="cannot be read"):
        Dataset(tmp_dataset.root, version=unpinned).read("labels")
    assert tmp_dataset.unpin("model-a") == 1 and tmp_dataset.pins() == {}


def _run_writer(root: str, body: str, env: dict | None = None, **kw) -> subprocess.Popen:
    script = textwrap.dedent(
        f"""
        import os, signal, resource, sys
        from pipeline.dataset import Dataset
        ds = Dataset({root!r})
        def batch(k):
            rows = [{{"clip_id": f"b{{k:04d}}-{{r:02d}}", "style": "pop", "emotion": "sad", "resolution": "agreed"}} for r in range(20)]
            return rows + [{{"clip_id": "latest", "style": str(k), "resolution": "agreed"}}]
        """
    ) + textwrap.dedent(body)
    return subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **kw,
    )


def _assert_whole_version(ds: Dataset) -> int:
    """The table equals exactly what some number of whole batches wrote; returns that number.

    Every documented reader agrees (issue 14.7: none may see a half-written or orphaned file).
    """
    rows = _by_id(ds)
    if ds.exists("labels"):
        uri = ds.table_uri("labels")
        assert pl.read_delta(uri, storage_options=ds.storage_options).height == len(rows)
        assert len(DeltaTable(uri, storage_options=ds.storage_options).to_pandas()) == len(rows)
        con = duckdb.connect()
        con.register("labels", ds.read("labels"))
        assert con.sql("select count(*), count(distinct clip_id) from labels").fetchall() == [(len(rows), len(rows))]
    if not rows:
        return 0
    k = int(rows.pop("latest")["style"])
    assert set(rows) == {f"b{j:04d}-{r:02d}" for j in range(k + 1) for r in range(20)}, f"half a commit visible at batch {k}"
    return k + 1


def test_write_failure_mid_file_leaves_previous_version_intact(tmp_dataset):
    """A real write fault: the file-size limit (RLIMIT_FSIZE) makes the data file write fail (EFBIG)."""
    tmp_dataset.upsert("labels", _labels(10))
    before, version = tmp_dataset.read("labels"), tmp_dataset.versions()
    proc = _run_writer(
        tmp_dataset.root,
        """
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (200, 200))
        try:
            ds.upsert("labels", batch(0))
        except Exception as exc:
            print("write failed:", type(exc).__name__, exc)
        """,
    )
    out, err = proc.communicate(timeout=120)
    assert "write failed" in out, err
    assert tmp_dataset.read("labels").equals(before) and tmp_dataset.versions() == version
    assert tmp_dataset.upsert("labels", _labels(11)).inserted == 1


@pytest.mark.parametrize("where", ["disk", "s3"])
def test_sigkill_mid_commit_reads_previous_or_next_version(where, tmp_dataset, request):
    """SIGKILL a writer looping over commits at several moments: never half a commit, next write works."""
    ds = tmp_dataset if where == "disk" else request.getfixturevalue("s3_dataset")
    seen = []
    for delay in (0.0, 0.03, 0.07, 0.15, 0.3):
        proc = _run_writer(
            ds.root,
            """
            k = int(os.environ["CANTOLAB_TEST_START"])
            first = k
            while True:
                ds.upsert("labels", batch(k))
                if k == first:
                    print("ready", flush=True)
                k += 1
            """,
            env={"CANTOLAB_TEST_START": str(_assert_whole_version(ds))},
        )
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        time.sleep(delay)
        proc.kill()
        proc.wait()
        seen.append(_assert_whole_version(ds))
        ds.upsert("labels", [{"clip_id": "after-kill", "style": "pop"}])  # the next write succeeds
        ds.delete("labels", [("after-kill",)])
    assert max(seen) >= 2, seen  # the kills really landed while commits were running


def _concurrent_writer(root: str, env: dict[str, str], writer: int) -> None:
    os.environ.update(env)
    ds = Dataset(root)
    for merge in range(10):
        ds.upsert("labels", [{"clip_id": f"w{writer}-m{merge}-r{r:02d}", "style": "pop", "resolution": "agreed"} for r in range(50)])


@pytest.mark.parametrize("where", ["disk", "s3"])
def test_four_processes_upsert_at_once_every_row_lands_once(where, tmp_dataset, request):
    import multiprocessing

    ds = tmp_dataset if where == "disk" else request.getfixturevalue("s3_dataset")
    env = request.getfixturevalue("s3_env") if where == "s3" else {}
    ctx = multiprocessing.get_context("spawn")  # delta-rs' runtime does not survive fork()
    procs = [ctx.Process(target=_concurrent_writer, args=(ds.root, env, w)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(240)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    ids = ds.read("labels", ["clip_id"]).column("clip_id").to_pylist()
    assert len(ids) == len(set(ids)) == 2000
    history = ds.history("labels")
    assert sum(h["operation"] == "upsert" for h in history) == 40 and sum(h["inserted"] for h in history) == 2000


def test_same_keys_from_four_processes_land_once(tmp_dataset):
    proc_body = """
    w = int(sys.argv[1])
    for m in range(4):
        ds.upsert("labels", [{"clip_id": f"k{r}", "style": f"w{w}m{m}"} for r in range(30)])
    """
    procs = [_run_writer(tmp_dataset.root, proc_body.replace("sys.argv[1]", str(w))) for w in range(4)]
    for p in procs:
        assert p.wait(180) == 0, p.stderr.read()
    rows = tmp_dataset.read("labels").to_pylist()
    assert len(rows) == 30 and len({r["style"] for r in rows}) == 1  # one commit's rows, whole


def test_conflicts_give_up_with_a_clear_message(tmp_dataset, monkeypatch):
    """A commit that can never win: a real rival commit lands between every read and write."""
    from pipeline.dataset import store

    tmp_dataset.upsert("labels", _labels(2))
    rival = Dataset(tmp_dataset.root)
    real_write = store.write_deltalake
    counter = iter(range(1000))

    def beaten(dt, data, **kw):
        monkeypatch.setattr(store, "write_deltalake", real_write)  # the rival writes normally
        rival.upsert("labels", [{"clip_id": "c000", "style": f"rival {next(counter)}"}])
        monkeypatch.setattr(store, "write_deltalake", beaten)
        return real_write(dt, data, **kw)

    monkeypatch.setattr(store, "write_deltalake", beaten)
    monkeypatch.setattr(store, "MAX_ATTEMPTS", 3)
    monkeypatch.setattr(store.time, "sleep", lambda s: None)
    with pytest.raises(DatasetError, match="3 attempts in a row lost to other writers"):
        tmp_dataset.upsert("labels", [{"clip_id": "c000", "style": "mine"}])
    assert _by_id(tmp_dataset)["c000"]["style"].startswith("rival")


def test_new_keys_racing_a_writer_of_the_same_keys_land_once(tmp_dataset, monkeypatch):
    """New keys are appended without a file scan; a rival that inserts the same keys between our
    read and our commit makes that commit conflict (the table's txn), and the redo replaces them."""
    from pipeline.dataset import store

    tmp_dataset.upsert("labels", _labels(2, style="pop"))  # the table exists, the keys below do not
    rival = Dataset(tmp_dataset.root)
    real_write = store.write_deltalake
    modes = []

    def raced(dt, data, **kw):
        modes.append(kw["mode"])
        if len(modes) == 1:  # a real rival commit lands between our read and our first write
            monkeypatch.setattr(store, "write_deltalake", real_write)
            rival.upsert("labels", [{"clip_id": f"new{i}", "style": "rival"} for i in range(5)])
            monkeypatch.setattr(store, "write_deltalake", raced)
        return real_write(dt, data, **kw)

    monkeypatch.setattr(store, "write_deltalake", raced)
    result = tmp_dataset.upsert("labels", [{"clip_id": f"new{i}", "style": "mine"} for i in range(5)])
    assert modes == ["append", "overwrite"]  # the append lost to the rival, the redo replaced its rows
    assert (result.inserted, result.updated) == (0, 5)
    rows = tmp_dataset.read("labels").to_pylist()  # read() refuses a key held twice
    assert len(rows) == 7 and {r["style"] for r in rows if r["clip_id"].startswith("new")} == {"mine"}


def _data_files(ds: Dataset, name: str) -> list[Path]:
    return sorted(Path(ds.root, name).glob("*.parquet"))


def test_stray_files_in_a_table_folder_are_never_read(tmp_dataset):
    tmp_dataset.upsert("labels", _labels(4))
    before = tmp_dataset.read("labels")
    folder = Path(tmp_dataset.root, "labels")
    pq.write_table(pa.Table.from_pylist(_labels(6, style="stray")), folder / "part-00000-stray-c000.zstd.parquet")
    (folder / "part-00001-half-c000.zstd.parquet").write_bytes(b"PAR1" + b"\0" * 100)
    labels = tmp_dataset.read("labels")
    assert labels.equals(before)
    assert duckdb.sql("select count(*), count(distinct clip_id) from labels").fetchall() == [(4, 4)]
    assert tmp_dataset.upsert("labels", _labels(5)).inserted == 1


def test_truncated_data_file_is_a_clear_error(tmp_dataset):
    tmp_dataset.upsert("labels", _labels(4))
    (live,) = [Path(u.removeprefix("file://")) for u in DeltaTable(Path(tmp_dataset.root, "labels")).file_uris()]
    live.write_bytes(live.read_bytes()[:-40])
    with pytest.raises(DatasetError, match="labels: a data file of .* cannot be read"):
        tmp_dataset.read("labels")


def test_log_entry_from_a_newer_writer_protocol_is_refused(tmp_dataset):
    tmp_dataset.upsert("labels", _labels(4))
    log = Path(tmp_dataset.root, "labels", "_delta_log")
    next_version = tmp_dataset.versions()["labels"] + 1
    entry = {"protocol": {"minReaderVersion": 9, "minWriterVersion": 9}}
    (log / f"{next_version:020d}.json").write_text(json.dumps(entry) + "\n")
    with pytest.raises(DatasetError, match="labels: .*newer Delta reader|labels: cannot open"):
        tmp_dataset.read("labels")
    with pytest.raises(DatasetError):
        tmp_dataset.upsert("labels", _labels(5))


def test_documented_readers_pandas_arrow_polars_duckdb(tmp_dataset):
    tmp_dataset.upsert("labels", _labels(6))
    tmp_dataset.upsert(
        "clips", [{"clip_id": f"c{i:03d}", "singer": "s1" if i < 4 else "s2", "start_s": 0.0, "end_s": 2.0} for i in range(6)]
    )
    assert len(tmp_dataset.to_pandas("labels")) == 6
    assert tmp_dataset.to_polars("labels").group_by("emotion").len().sort("emotion").rows() == [("happy", 3), ("sad", 3)]
    con = duckdb.connect()  # DuckDB over the Arrow tables: offline, no Delta extension to download
    con.register("clips", tmp_dataset.read("clips", ["clip_id", "singer"]))
    con.register("labels", tmp_dataset.read("labels"))
    got = con.sql("select singer, emotion, count(*) from clips join labels using (clip_id) group by all order by all").fetchall()
    assert got == [("s1", "happy", 2), ("s1", "sad", 2), ("s2", "happy", 1), ("s2", "sad", 1)]
    # Any Delta reader works too: deltalake itself, through the log.
    assert len(DeltaTable(f"{tmp_dataset.root}/labels").to_pandas()) == 6
    assert pl.from_arrow(DeltaTable(f"{tmp_dataset.root}/labels").to_pyarrow_table()).height == 6


def test_s3_dataset_round_trip(s3_dataset):
    s3_dataset.upsert("labels", _labels(5))
    assert s3_dataset.upsert("labels", _labels(5)).written == 0
    again = Dataset(s3_dataset.root)
    assert again.count("labels") == 5 and again.versions() == {"labels": 1}
    assert again.exists("labels") and not again.exists("clips")


def test_older_tables_missing_a_nullable_column_read_with_nulls(tmp_dataset):
    schema = SCHEMAS["labels"].remove(SCHEMAS["labels"].get_field_index("annotators"))
    from deltalake import write_deltalake

    write_deltalake(f"{tmp_dataset.root}/labels", pa.Table.from_pylist([{"clip_id": "a", "style": "pop"}], schema=schema))
    read = tmp_dataset.read("labels")
    assert read.schema.equals(SCHEMAS["labels"]) and read.column("annotators").null_count == 1
    # The next upsert adds the column to the table (schema evolution), old rows keep nulls.
    assert tmp_dataset.upsert("labels", [{"clip_id": "b", "style": "pop", "annotators": ["x"]}]).inserted == 1
    assert {r["clip_id"]: r["annotators"] for r in tmp_dataset.read("labels").to_pylist()} == {"a": None, "b": ["x"]}


def test_unsupported_url_is_refused(tmp_path):
    with pytest.raises(DatasetError, match="unsupported URL"):
        Dataset("memory://x")
    assert Dataset(f"file://{tmp_path}/ds").upsert("labels", _labels(2)).inserted == 2
    assert Dataset(tmp_path / "ds").count("labels") == 2


def test_folder_with_spaces_and_accents(tmp_path):
    """The log's paths are URI-encoded; the store reads the files by their real names."""
    ds = Dataset(tmp_path / "Studio B é" / "data set")
    ds.upsert("labels", _labels(3))
    assert ds.upsert("labels", _labels(3)).written == 0  # keys found in the existing file
    assert ds.upsert("labels", _labels(3, style="sad")).updated == 3
    assert ds.delete("labels", [("c000",)]) == 1
    assert sorted(r["style"] for r in ds.read("labels").to_pylist()) == ["sad", "sad"]


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


def test_compact_merges_files_and_keeps_every_row(tmp_dataset):
    for i in range(5):
        tmp_dataset.upsert("labels", _labels(12)[i * 2 : i * 2 + 3])
    before = sorted(tmp_dataset.read("labels").to_pylist(), key=lambda r: r["clip_id"])
    dt = lambda: DeltaTable(f"{tmp_dataset.root}/labels")  # noqa: E731
    assert len(dt().file_uris()) > 1
    assert tmp_dataset.compact("labels") > 1
    assert len(dt().file_uris()) == 1
    assert sorted(tmp_dataset.read("labels").to_pylist(), key=lambda r: r["clip_id"]) == before
    assert tmp_dataset.compact("labels") == 0
    assert tmp_dataset.upsert("labels", before).written == 0  # hashes survive compaction
    assert tmp_dataset.history("labels")[0]["operation"] == "compact"


def test_migration_round_trip_of_an_old_layout_dataset(tmp_path):
    """A dataset in the Parquet-parts layout this replaced (tests/legacy_layout.py)
    (with a stale copy left by an interrupted upsert): every row arrives, newest copy wins."""
    from pipeline.dataset.legacy import content_hash, migrate, read_legacy

    legacy = write_legacy_dataset(tmp_path / "legacy")
    with pytest.raises(DatasetError, match="old Parquet-parts layout.*cantolab dataset migrate"):
        Dataset(legacy).read("labels")
    results = migrate(legacy, tmp_path / "new")
    assert all(r.ok for r in results) and {r.table: r.rows_new for r in results}["labels"] == 4
    new = Dataset(tmp_path / "new")
    for name in SCHEMAS:
        assert content_hash(new.read(name), name) == content_hash(read_legacy(legacy, name), name)
    labels = _by_id(new)
    assert (labels["c1"]["style"], labels["c2"]["style"], labels["c2"]["annotators"]) == ("bel canto", "bel canto", ["ann1"])
    clips = new.read("clips").to_pylist()
    assert len(clips) == 6 and all(len(c["audio_flac"]) == 2000 for c in clips)
    assert new.upsert("labels", read_legacy(legacy, "labels")).written == 0  # converted rows are the same rows
    with pytest.raises(DatasetError, match="no table in the old"):
        migrate(tmp_path / "new", tmp_path / "again")


def test_composite_keys_across_groups_replace_exactly_their_rows(tmp_dataset):
    """An upsert's predicate is one IN list per value of the leading key columns: rows of another
    stage with the same source, and other sources of the same stage, are left alone."""
    rows = [{"stage": st, "source": f"s{i}", "reason": "first"} for st in ("import", "ingest") for i in range(3)]
    tmp_dataset.upsert("rejects", rows)
    result = tmp_dataset.upsert("rejects", [{"stage": "import", "source": "s1", "reason": "again"},
                                            {"stage": "ingest", "source": "s2", "reason": "again"},
                                            {"stage": "ingest", "source": "s9", "reason": "new"}])  # fmt: skip
    assert (result.inserted, result.updated) == (1, 2)
    reasons = {(r["stage"], r["source"]): r["reason"] for r in tmp_dataset.read("rejects").to_pylist()}
    assert reasons == {**{(r["stage"], r["source"]): "first" for r in rows},
                       ("import", "s1"): "again", ("ingest", "s2"): "again", ("ingest", "s9"): "new"}  # fmt: skip


def test_audio_bytes_are_not_copied_into_parquet_footers(tmp_dataset):
    """Parquet keeps min/max statistics per column chunk in the footer: untruncated for a binary
    column, a 90 KB clip made a 184 KB footer that every key scan read (issue 14.3)."""
    audio = os.urandom(200_000)
    tmp_dataset.upsert("clips", [{"clip_id": f"c{i}", "audio_flac": audio, "transcript": "x" * 500} for i in range(3)])
    tmp_dataset.compact("clips")
    (path,) = DeltaTable(f"{tmp_dataset.root}/clips").file_uris()
    meta = pq.ParquetFile(path).metadata
    assert meta.serialized_size < 20_000, meta.serialized_size
    names = meta.schema.names
    stats = meta.row_group(0).column(names.index("audio_flac")).statistics
    assert stats is None or not stats.has_min_max
    assert tmp_dataset.read("clips", ["audio_flac"]).column(0).to_pylist() == [audio] * 3


def test_bulk_upsert_merges_instead_of_listing_keys(tmp_path, monkeypatch):
    """Past MERGE_ABOVE_KEYS rows an upsert is a MERGE (a replaceWhere list of ~8,000 composite keys
    crashed delta-rs): same inserts, updates and no duplicate keys as the key-list path."""
    import pipeline.dataset.store as store

    monkeypatch.setattr(store, "MERGE_ABOVE_KEYS", 10)
    ds = Dataset(tmp_path / "ds")
    rows = [{"clip_id": f"c{i // 2}", "annotator": f"a{i % 2}@x", "round": "first", "style": "pop", "emotion": "sad"} for i in range(60)]
    assert ds.upsert("annotations", rows[:5]).inserted == 5  # the key-list path
    r = ds.upsert("annotations", rows)  # 55 new rows: MERGE
    assert (r.inserted, r.updated, r.unchanged) == (55, 0, 5)
    changed = [dict(row, style="bel canto") if i % 3 == 0 else row for i, row in enumerate(rows)]
    r = ds.upsert("annotations", changed)
    assert (r.inserted, r.updated, r.unchanged) == (0, 20, 40)
    df = ds.to_pandas("annotations")
    assert len(df) == 60 and not df.duplicated(["clip_id", "annotator", "round"]).any()
    assert (df["style"] == "bel canto").sum() == 20
    assert ds.upsert("annotations", changed).unchanged == 60  # idempotent: no commit

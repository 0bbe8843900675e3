"""Ingest with everything on the real S3 server: recordings under an s3:// prefix, the dataset too."""

from __future__ import annotations

import json

from flows.ingest import ingest_flow
from pipeline.dataset import Dataset
from pipeline.objectstore import arrow_s3_filesystem

CLIP = "audio/EN-Alto-2-Vibrato-Vibrato-bBC73SBE.flac"  # 8 s of English singing (as in test_ingest)


def test_ingest_reads_s3_recordings_into_an_s3_dataset(prefect_harness, s3_env, gtsinger, tmp_path, monkeypatch):
    monkeypatch.setenv("CANTOLAB_RECORDINGS_CACHE", str(tmp_path / "cache"))
    source = gtsinger.set_index("path").loc[CLIP]
    filesystem = arrow_s3_filesystem()
    prefix = f"cantolab-test/{tmp_path.name}/recordings/2026-11-28-alto"
    with open(source["abs_path"], "rb") as fh, filesystem.open_output_stream(f"{prefix}/take-000.flac") as out:
        out.write(fh.read())
    manifest = {
        "take_id": "alto-s3-000",
        "session": "2026-11-28-alto",
        "singer": source["singer"],
        "song": source["song"],
        "language": "en",
    }
    with filesystem.open_output_stream(f"{prefix}/take-000.json") as out:
        out.write(json.dumps(manifest).encode())
    dataset = f"s3://cantolab-test/{tmp_path.name}/dataset"
    settings = {"model": "tiny.en", "transcribe": {"beam_size": 1}}
    report = ingest_flow(f"s3://cantolab-test/{tmp_path.name}/recordings", dataset, settings=settings)
    assert report["ingested"] == 1 and report["rejected"] == 0, json.dumps(report, default=str)[:3000]
    ds = Dataset(dataset)
    (take,) = ds.read("takes", ["take_id", "singer", "source_path"]).to_pylist()
    assert take["take_id"] == "alto-s3-000" and take["singer"] == source["singer"]
    clips = ds.read("clips", ["clip_id", "transcript"]).to_pylist()
    assert clips and all(c["transcript"] for c in clips)
    again = ingest_flow(f"s3://cantolab-test/{tmp_path.name}/recordings", dataset, settings=settings)
    assert again["ingested"] == 1 and ds.count("clips") == len(clips)  # nothing duplicated on a re-run

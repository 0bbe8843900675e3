"""The take manifest contract: capture writes it, ingest reads it through the same types."""

from __future__ import annotations

import json

import pytest

from pipeline.audio import write_audio
from pipeline.errors import InputError
from pipeline.ingest import discover_takes, read_import_csv
from pipeline.manifest import TakeManifest, TakeStatus, contract_fields, read_manifest, write_manifest
from pipeline.synth import SungNote, sung_note


def test_round_trip_and_typed_status(tmp_path):
    m = TakeManifest(take_id="t1", session="s", singer="x", song="y", peak_dbfs=-3.5, status=TakeStatus.COMPLETE, rating=4)
    write_manifest(tmp_path / "t1.json", m)
    raw = json.loads((tmp_path / "t1.json").read_text())
    assert raw["status"] == "complete" and raw["rating"] == 4
    back = read_manifest(tmp_path / "t1.json")
    assert back == m and back.status is TakeStatus.COMPLETE
    assert not list(tmp_path.glob(".*.tmp"))  # written through pipeline.fsio, nothing left behind


def test_wrong_values_name_the_field(tmp_path):
    (tmp_path / "bad.json").write_text(json.dumps({"take_id": "t", "session": "s", "singer": "x", "song": "y", "frames": "many"}))
    with pytest.raises(InputError, match=r"bad.json: frames"):
        read_manifest(tmp_path / "bad.json")
    (tmp_path / "st.json").write_text(json.dumps({"take_id": "t", "session": "s", "singer": "x", "song": "y", "status": "half"}))
    with pytest.raises(InputError, match="status"):
        read_manifest(tmp_path / "st.json")
    (tmp_path / "junk.json").write_text("{not json")
    with pytest.raises(InputError, match="junk.json"):
        read_manifest(tmp_path / "junk.json")


def test_csv_strings_are_typed_by_the_contract():
    row = {"take_id": "t", "peak_dbfs": " -1.5 ", "clipped_samples": "3", "recovered": "true", "notes": "", "extra": "x"}
    assert contract_fields(row) == {"take_id": "t", "peak_dbfs": -1.5, "clipped_samples": 3, "recovered": True}
    with pytest.raises(InputError, match="clipped_samples"):
        contract_fields({"clipped_samples": "lots"}, "row 2")


def test_a_bad_csv_value_is_a_reject_naming_the_row(tmp_path):
    write_audio(tmp_path / "a.wav", sung_note(SungNote(seconds=0.3)), 48000, "PCM_24")
    csv_path = tmp_path / "import.csv"
    csv_path.write_text("path,singer,clipped_samples\na.wav,s1,lots\n")
    sources, problems = read_import_csv(csv_path, tmp_path)
    assert sources == [] and len(problems) == 1 and "clipped_samples" in problems[0].reason


def test_discarded_take_stays_on_disk_and_is_skipped(tmp_path):
    session = tmp_path / "s1"
    session.mkdir()
    for take_id, discarded in (("keep", False), ("drop", True)):
        write_audio(session / f"{take_id}.wav", sung_note(SungNote(seconds=0.3)), 48000, "PCM_24")
        write_manifest(
            session / f"{take_id}.json",
            TakeManifest(take_id=take_id, session="s1", singer="x", song="y", status=TakeStatus.COMPLETE, discarded=discarded),
        )
    sources, problems = discover_takes(tmp_path)
    assert [s.manifest["take_id"] for s in sources] == ["keep"] and problems == []
    assert (session / "drop.wav").exists()


def test_a_manifest_without_status_is_a_finished_take(tmp_path):
    (tmp_path / "t.json").write_text(json.dumps({"take_id": "t", "session": "s", "singer": "x", "song": "y", "language": "en"}))
    m = read_manifest(tmp_path / "t.json")
    assert m.status is TakeStatus.COMPLETE and m.language == "en"

"""Discovery of capture's takes: a take still marked `recording` is reported, not ingested half-done."""

from __future__ import annotations

import json

from pipeline.audio import write_audio
from pipeline.ingest import discover_takes
from pipeline.synth import SungNote, sung_note


def _take(folder, take_id: str, status: str) -> None:
    write_audio(folder / f"{take_id}.wav", sung_note(SungNote(seconds=0.5)), 48000, "PCM_24")
    manifest = {"take_id": take_id, "session": folder.name, "singer": "s1", "song": "x", "status": status,
                "started_at": "2026-11-28T02:00:00Z", "end_reason": "duration"}  # fmt: skip
    (folder / f"{take_id}.json").write_text(json.dumps(manifest))


def test_interrupted_take_is_reported_and_finished_one_found(tmp_path):
    session = tmp_path / "session-1"
    session.mkdir()
    _take(session, "take-live", "recording")
    _take(session, "take-done", "complete")
    sources, problems = discover_takes(tmp_path)
    assert [s.manifest["take_id"] for s in sources] == ["take-done"]
    assert "status" not in sources[0].manifest and sources[0].manifest["session"] == "session-1"
    assert len(problems) == 1 and problems[0].source.endswith("take-live.wav")
    assert "cantolab capture recover" in problems[0].reason

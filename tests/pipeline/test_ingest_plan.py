"""The merge rule for known takes, the conflict rule for sources, and per-take leases (no Prefect)."""

from __future__ import annotations

import subprocess
import sys

from pipeline.ingest import KnownTake, Planned, SourceProblem, TakeSource, merge_metadata, plan_take
from pipeline.leases import TakeLeases


def test_null_never_overwrites_and_changes_are_named():
    known = {"singer": "A", "session": "s1", "song": "x", "language": "en", "started_at": "2026-11-28T10:00:00+00:00"}
    merged, changed = merge_metadata({"song": "y", "language": None, "started_at": "2026-11-28T10:00:00Z"}, known)
    assert merged == {"singer": "A", "session": "s1", "song": "y", "language": "en", "started_at": "2026-11-28T10:00:00Z"}
    assert changed == ["song"]
    merged, changed = merge_metadata({"session": "folder-name"}, known, guessed=("session",))
    assert merged["session"] == "s1" and changed == []


def test_known_audio_keeps_its_take_id_and_conflicts_name_the_first():
    by_sha = {"aaa": KnownTake("t-1", "aaa", {"singer": "A"})}
    by_id = {"t-1": by_sha["aaa"]}
    seen_id, seen_sha = {}, {}
    first = plan_take(TakeSource("/r/copy.wav", "/r/copy.wav"), "aaa", by_id, by_sha, seen_id, seen_sha)
    assert isinstance(first, Planned) and first.take_id == "t-1" and first.manifest["singer"] == "A"
    again = plan_take(TakeSource("/r/again.wav", "list.csv:3", {"singer": "B"}), "aaa", by_id, by_sha, seen_id, seen_sha)
    assert isinstance(again, SourceProblem) and again.reason.startswith("same audio as /r/copy.wav")
    renamed = plan_take(TakeSource("/r/x.wav", "list.csv:4", {"take_id": "other"}), "aaa", by_id, by_sha, {}, {})
    assert isinstance(renamed, SourceProblem) and "already in the dataset" in renamed.reason
    clash = plan_take(TakeSource("/r/y.wav", "list.csv:5", {"take_id": "t-1"}), "bbb", by_id, by_sha, seen_id, seen_sha)
    assert isinstance(clash, SourceProblem) and clash.reason == "take id 't-1' is already given to /r/copy.wav, whose audio differs"


def test_a_lease_is_exclusive_across_processes_and_freed_by_the_holders_death(tmp_path):
    leases = TakeLeases(tmp_path)
    holder = subprocess.Popen(
        [sys.executable, "-c", f"from pipeline.leases import TakeLeases\nl = TakeLeases({str(tmp_path)!r}).acquire('t/1')\n"
         "assert l.held\nprint('held', flush=True)\nimport time\ntime.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        assert not leases.acquire("t/1").held
    finally:
        holder.kill()
        holder.wait()
    lease = leases.acquire("t/1")  # the kernel dropped the dead holder's lock
    assert lease.held and lease.record is None
    lease.finished(sha256="aaa")
    lease.release()
    again = leases.acquire("t/1")
    assert again.held and again.record["sha256"] == "aaa"
    again.release()

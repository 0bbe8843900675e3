"""`cantolab predict` on a take far over the length limit: refused from its header, in bounded memory."""

from __future__ import annotations

import json

import pytest

from model.runs import train_and_save
from pipeline.audio import decode_audio_bytes, write_audio
from pipeline.synth import long_take_wav
from tests.model.conftest import tiny_config
from tests.peak_rss import peak_rss_mb


@pytest.fixture(scope="module")
def run_folder(gt_small, tmp_path_factory):
    folder, run, _ = train_and_save(gt_small, tiny_config(epochs=1), tmp_path_factory.mktemp("models"), "ok", progress=False)
    return folder, run


def _cli(*args: str) -> str:
    """The real console entry point in a fresh interpreter (its exit status printed, not raised)."""
    return (
        "import sys\nfrom flows.cli import app\n"
        f"sys.argv = ['cantolab', *{list(args)!r}]\n"
        "try:\n    app()\nexcept SystemExit as e:\n    print('EXIT', e.code)\n"
    )


def test_two_hour_wav_refused_by_predict_in_bounded_memory(run_folder, tmp_path):
    """Issue 14.4: `predict` on a 2-hour WAV reached 2.33 GB, then 409 MB of model imports alone.

    The files are checked before the model stack is imported, so a refused take costs the audio
    core only; an honest predict on a normal clip in the same way still gives its prediction.
    """
    folder, run = run_folder
    path = long_take_wav(tmp_path / "two-hours.wav", 2 * 3600)
    rc, out, peak = peak_rss_mb(_cli("predict", str(path), "--model", str(folder)))
    assert rc == 0, out
    assert "EXIT 2" in out and "too long: 7200.0 s" in out and "two-hours.wav" in out, out
    assert peak < 400, f"peak RSS {peak:.0f} MB refusing a 2-hour take"

    samples, rate = decode_audio_bytes(run.test_examples[0].audio())
    write_audio(tmp_path / "take.wav", samples, rate, "PCM_24")
    rc, out, _ = peak_rss_mb(_cli("predict", str(tmp_path / "take.wav"), "--model", str(folder), "--out", str(tmp_path / "p.json")))
    assert rc == 0 and "EXIT 0" in out, out
    rows = json.loads((tmp_path / "p.json").read_text())
    assert [r["clip_id"] for r in rows] == [str(tmp_path / "take.wav")]
    classes = json.loads((folder / "labels.json").read_text())["classes"]
    assert rows[0]["style"] in classes["style"] and 0 < rows[0]["style_confidence"] <= 1

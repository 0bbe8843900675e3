"""What `cantolab ingest`'s options promise, through the CLI on real takes: `--normalize rms|lufs`
reach their targets, `--max-clip` cuts a longer take into several bounded clips, `--concurrency 2`
ingests every take once, `--vad` transcribes without keeping encoder frames."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
from typer.testing import CliRunner

from flows.cli import app
from pipeline.audio import decode_audio_bytes, load_audio
from pipeline.dataset import Dataset
from pipeline.preprocess import db, rms
from tests.flows.test_ingest import CLI_SETTINGS, recordings  # noqa: F401 — the takes fixture

CEILING, RMS_TARGET, LUFS_TARGET = -0.1, -20.0, -23.0  # PreprocessConfig's defaults


def _ingest(recordings, ds, *options) -> dict:  # noqa: F811
    result = CliRunner().invoke(app, ["ingest", str(recordings), "--dataset", str(ds), *CLI_SETTINGS, *options, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout[result.stdout.index("{") :])
    assert report["ingested"] == 3 and report["rejected"] == 1, report  # the corrupt take is quarantined
    return report


def _centred(take: dict) -> np.ndarray:
    return load_audio(take["source_path"]).samples.astype(np.float64) - take["dc_offset"]


class _Overlap:
    """Counts transcriptions in flight: a wrapper around the real transcriber (not a mock), since
    the number running at once is not visible in the dataset."""

    def __init__(self):
        self.active = self.peak = self.calls = 0
        self.lock = threading.Lock()

    def around(self, load):
        def counting_load(*args, **kwargs):
            real, counter = load(*args, **kwargs), self

            class Counting:
                def __getattr__(self, name):
                    return getattr(real, name)

                def transcribe(self, *a, **kw):
                    with counter.lock:
                        counter.active += 1
                        counter.calls += 1
                        counter.peak = max(counter.peak, counter.active)
                    try:
                        return real.transcribe(*a, **kw)
                    finally:
                        with counter.lock:
                            counter.active -= 1

            return Counting()

        return counting_load


def test_rms_normalization_short_clips_and_two_at_once(prefect_harness, recordings, tmp_path, monkeypatch):  # noqa: F811
    import pipeline.ingest

    overlap = _Overlap()
    monkeypatch.setattr(pipeline.ingest, "load_transcriber", overlap.around(pipeline.ingest.load_transcriber))
    ds = Dataset(tmp_path / "dataset")
    _ingest(recordings, ds.root, "--normalize", "rms", "--min-clip", "2", "--max-clip", "4", "--concurrency", "2")
    assert (overlap.calls, overlap.peak) == (3, 2)  # three takes, two transcribed at once, never three
    takes = ds.read("takes").to_pylist()
    assert len(takes) == 3 and len({t["take_id"] for t in takes}) == 3
    for take in takes:
        x = _centred(take)
        level, peak = db(rms(x)) + take["gain_db"], db(np.abs(x).max()) + take["gain_db"]
        # on the RMS target, or held at the peak ceiling below it (never peak-normalized to −1 dBFS)
        assert level == pytest.approx(RMS_TARGET, abs=0.01) or (peak == pytest.approx(CEILING, abs=0.01) and level < RMS_TARGET), (
            level,
            peak,
        )
    clips = ds.read("clips").to_pylist()
    for take in takes:
        mine = sorted((c for c in clips if c["take_id"] == take["take_id"]), key=lambda c: c["start_s"])
        assert len(mine) >= 2, (take["seconds"], [(c["start_s"], c["end_s"]) for c in mine])  # 7.6–8.5 s takes, 4 s clips
        assert all(c["end_s"] - c["start_s"] <= 4.0 + 1e-6 for c in mine), [(c["start_s"], c["end_s"]) for c in mine]
        assert all(a["end_s"] <= b["start_s"] + 1e-6 for a, b in zip(mine, mine[1:]))  # in order, no overlap
        for c in mine:  # each clip's audio is its span of the processed take
            samples, rate = decode_audio_bytes(c["audio_flac"])
            assert abs(len(samples) / rate - (c["end_s"] - c["start_s"])) < 0.01


def test_lufs_normalization_and_vad(prefect_harness, recordings, tmp_path):  # noqa: F811
    import pyloudnorm

    ds = Dataset(tmp_path / "dataset")
    _ingest(recordings, ds.root, "--normalize", "lufs", "--vad")
    takes = ds.read("takes").to_pylist()
    assert len(takes) == 3
    for take in takes:
        x = _centred(take) * 10 ** (take["gain_db"] / 20)
        loudness = pyloudnorm.Meter(48_000).integrated_loudness(x)
        assert loudness == pytest.approx(LUFS_TARGET, abs=0.05) or (
            db(np.abs(x).max()) == pytest.approx(CEILING, abs=0.01) and loudness < LUFS_TARGET
        )
    clips = ds.read("clips").to_pylist()
    assert len(clips) >= 3 and sum(bool(c["transcript"]) for c in clips) >= 2
    assert ds.count("features") == 0  # VAD drops audio before the encoder: its frames are not the take's

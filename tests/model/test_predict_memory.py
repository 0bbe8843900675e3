"""`predict` on a take far over the length limit: refused from its header, memory unchanged."""

from __future__ import annotations

from pipeline.synth import long_take_wav
from tests.peak_rss import peak_rss_mb


def _peak_rss_mb(code: str) -> tuple[int, str, float]:
    return peak_rss_mb(code)


def test_two_hour_wav_refused_by_predict_without_decoding_it(tmp_path):
    """Issue 14.4: `predict` on a 2-hour WAV reached 2.33 GB; now it costs nothing over the imports.

    The model stack alone (torch, scipy) peaks near 420 MB on this machine, so the check is on what
    the file adds to a run that only imports it.
    """
    path = long_take_wav(tmp_path / "two-hours.wav", 2 * 3600)
    imports = "from model.predict import examples_from_files\nfrom pipeline.audio import AudioError\n"
    rc, out, baseline = _peak_rss_mb(imports)
    assert rc == 0, out
    rc, out, peak = _peak_rss_mb(imports + f"try:\n    examples_from_files([{str(path)!r}])\nexcept AudioError as exc:\n    print(exc)\n")
    assert rc == 0, out
    assert "too long: 7200.0 s" in out and str(path) in out
    assert peak - baseline < 50, f"the file added {peak - baseline:.0f} MB (imports alone {baseline:.0f} MB)"

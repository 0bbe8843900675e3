"""`predict` on a take far over the length limit: refused from its header, memory unchanged."""

from __future__ import annotations

import subprocess
import sys

from pipeline.synth import long_take_wav


def _peak_rss_mb(code: str) -> tuple[int, str, float]:
    """Exit status, output and the child's own peak RSS (VmHWM; wait4's figure includes the parent's)."""
    epilogue = "\nprint('PEAK_RSS_KB', open('/proc/self/status').read().split('VmHWM:')[1].split()[0])\n"
    proc = subprocess.run([sys.executable, "-c", code + epilogue], capture_output=True, text=True)
    lines = proc.stdout.strip().splitlines()
    peak = next((int(line.split()[1]) / 1024 for line in lines if line.startswith("PEAK_RSS_KB")), float("inf"))
    return proc.returncode, proc.stdout + proc.stderr, peak


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

"""`make demo` end to end on its synthesized-session path (no reference recordings): the Makefile's
own recipe (`make -o setup demo`: the venv is there already), the bundled tiny.en weights."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from pipeline.dataset import Dataset

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(300)
def test_make_demo_without_reference_data(prefect_harness, tmp_path):
    out = tmp_path / "demo-output"
    env = {
        **os.environ,
        "CANTOLAB_DATA": str(tmp_path / "absent"),  # → the synthesized session
        "CANTOLAB_DEMO_DIR": str(out),
        "CANTOLAB_DEMO_MODEL": "tiny.en",
        "PREFECT_API_URL": prefect_harness,  # the session's server instead of one more temporary one
        "PYTHONPATH": str(REPO),
        "COLUMNS": "160",
    }
    run = subprocess.run(["make", "-o", "setup", "demo"], cwd=REPO, env=env, capture_output=True, text=True, timeout=280)
    text = run.stdout + run.stderr
    assert run.returncode == 0, text[-4000:]
    assert "No reference data (CANTOLAB_DATA); synthesizing a short session" in text
    assert "ingesting 6 recordings of synthesized" in text
    ds = Dataset(out / "dataset")
    assert ds.count("takes") == 6 and ds.count("clips") >= 6 and ds.count("rejects") == 0
    takes = ds.read("takes").to_pylist()
    assert {t["singer"] for t in takes} == {"synth-1", "synth-2", "synth-3"}
    assert all(abs(t["dc_offset"]) > 0.005 for t in takes)  # the synthesized DC offsets were measured and removed
    # The synthesized notes carry no labels: the demo says training is skipped, and why.
    assert "training skipped" in text and "label" in text.split("training skipped", 1)[1][:200]

"""Under CI a skip for a missing real part fails the run; locally it skips with its reason."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.data import shared_data_dir
from tests.conftest import NO_DATA, under_ci

REPO = Path(__file__).resolve().parents[1]

# A throw-away test module run in a child pytest: one test needs the reference data, one skips in
# its body, one is a legitimate skip everywhere, one passes.
PROBE = """
import pytest

def test_needs_data(gtsinger):
    assert len(gtsinger)

@pytest.mark.skip_ok("needs a CUDA device")
def test_gpu_only():
    pytest.skip("no CUDA device")

def test_body_skip():
    pytest.skip("Label Studio's venv is missing")

def test_plain():
    assert True
"""


def test_reference_data_is_present():
    """The one test that names the missing recordings: skips locally, fails under CI (see conftest)."""
    if shared_data_dir() is None:
        pytest.skip(NO_DATA)
    assert (shared_data_dir() / "gtsinger" / "labels.csv").exists()


def _run_probe(tmp_path: Path, ci: str | None, *args: str) -> subprocess.CompletedProcess:
    probe = tmp_path / "test_probe.py"
    probe.write_text(PROBE)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env.update(CANTOLAB_DATA=str(tmp_path / "no-such-folder"), PYTHONPATH=str(REPO))
    if ci is not None:
        env["CI"] = ci
    # The repository's conftest as a plugin, so the probe runs under exactly these hooks and fixtures.
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "tests.conftest",
        "-p",
        "no:cacheprovider",
        "-c",
        os.devnull,
        "--rootdir",
        str(tmp_path),
        "-q",
        "-rA",
        str(probe),
        *args,
    ]
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("ci", ["true", "1"])
def test_under_ci_a_missing_real_part_fails_the_run(tmp_path, ci):
    run = _run_probe(tmp_path, ci)
    out = run.stdout + run.stderr
    assert run.returncode == pytest.ExitCode.TESTS_FAILED, out
    assert "1 failed, 1 passed, 1 skipped, 1 error" in out, out  # a fixture's skip fails in setup: an error
    assert "skipped under CI, which must have every real part: reference recordings absent" in out, out
    assert "SKIPPED [1]" in out and "no CUDA device" in out  # the skip_ok test still skips


def test_locally_a_missing_real_part_skips_with_its_reason(tmp_path):
    run = _run_probe(tmp_path, None)
    out = run.stdout + run.stderr
    assert run.returncode == pytest.ExitCode.OK, out
    assert "1 passed, 3 skipped" in out, out
    assert NO_DATA in out


def test_under_ci_no_tests_is_a_failure_not_exit_5(tmp_path):
    assert _run_probe(tmp_path, "true", "-k", "no_test_has_this_name").returncode == pytest.ExitCode.TESTS_FAILED
    assert _run_probe(tmp_path, None, "-k", "no_test_has_this_name").returncode == pytest.ExitCode.NO_TESTS_COLLECTED


def test_this_process_knows_whether_it_is_ci():
    assert under_ci() == (os.environ.get("CI", "").lower() in {"1", "true", "yes", "on"})

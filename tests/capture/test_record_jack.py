"""Paced, real-time recording through JACK's dummy driver; SIGKILL + recover; a 44.1 kHz-only device."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from datetime import datetime

import numpy as np
import pytest
import soundfile as sf

from capture import virtual_device as vd
from pipeline.audio import load_audio, sha256_file
from tests.capture.conftest import REPO, Device, _env, capture_cli, only_take, record_args


def _max_lsb_error(got: np.ndarray, want: np.ndarray) -> int:
    return int(np.abs((got.astype(np.int64) >> 8) - (want.astype(np.int64) >> 8)).max())


@pytest.mark.timeout(120)
def test_paced_ten_seconds_without_overflow(tmp_path, jack_device):
    t0 = time.monotonic()
    run = capture_cli(record_args(tmp_path / "REC", "--seconds", "10"), jack_device)
    wall = time.monotonic() - t0
    assert run.returncode == 0, run.stdout + run.stderr
    assert wall >= 10.0  # really paced by the JACK clock, not read as fast as possible
    wav, js = only_take(tmp_path / "REC" / "s01")
    m = json.loads(js.read_text())
    assert (m["frames"], m["input_overflows"], m["frames_lost"], m["status"]) == (480_000, 0, 0, "complete")
    got, _ = sf.read(wav, dtype="int32")
    assert got.size == 480_000
    assert _max_lsb_error(got, jack_device.source.samples[:480_000]) <= 1


@pytest.mark.timeout(120)
def test_sigkill_mid_take_then_recover(tmp_path, jack_device):
    recordings = tmp_path / "REC"
    proc = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "capture", *record_args(recordings)],
        cwd=REPO,
        env=jack_device.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not list(recordings.glob("s01/*.json")) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(4.5)
        assert proc.poll() is None, "the recorder ended before it was killed"
        proc.send_signal(signal.SIGKILL)
        killed_at = time.time()
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    wav, js = only_take(recordings / "s01")
    started = datetime.fromisoformat(json.loads(js.read_text())["started_at"].replace("Z", "+00:00")).timestamp()
    assert json.loads(js.read_text())["status"] == "recording"

    run = capture_cli(["recover", str(recordings)], jack_device)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 recovered" in run.stdout
    assert f"s01/{wav.name}" in run.stdout  # the full take id, never cut
    said = run.stdout.split("recovered  s01/")[1]
    saved = float(said.split(" s saved")[0].split()[-1])
    not_saved = float(said.split(" s not saved")[0].split()[-1])
    m = json.loads(js.read_text())
    assert (m["status"], m["recovered"]) == ("recovered", True)
    got, rate = sf.read(wav, dtype="int32")
    recorded_for = killed_at - started
    # All but at most the last second (plus the stream's start-up latency) is kept.
    assert got.size >= (recorded_for - 1.0 - 0.3) * rate, (got.size, recorded_for)
    assert got.size <= (recorded_for + 0.1) * rate
    assert _max_lsb_error(got, jack_device.source.samples[: got.size]) <= 1
    assert (m["frames"], m["seconds"], m["sha256"]) == (got.size, got.size / rate, sha256_file(wav))
    assert abs(saved - got.size / rate) < 0.01  # the seconds on disk, as said
    assert abs(saved + not_saved - recorded_for) < 0.2 + 0.6, (saved, not_saved, recorded_for)  # + input latency
    ended = datetime.fromisoformat(m["ended_at"].replace("Z", "+00:00")).timestamp()
    assert killed_at - 0.6 <= ended <= killed_at  # the last audio written, not the time of recovery
    assert m["take_id"] == wav.stem and m["singer"] == "ZH-Alto-1" and m["input_overflows"] == 0
    assert abs(m["peak_dbfs"] - 20 * np.log10(np.abs(got.astype(np.int64)).max() / 2**31)) < 1e-3
    assert load_audio(wav).frames == got.size

    again = capture_cli(["recover", str(recordings)], jack_device)  # nothing left to do
    assert "0 recovered" in again.stdout and json.loads(js.read_text()) == m


@pytest.mark.timeout(60)
def test_a_44_1_khz_only_device_is_refused(tmp_path, studio_source):
    if not vd.jackd_available():
        pytest.skip("jackd or the ALSA JACK plugin (Debian jackd2, libasound2-plugins) is not installed")
    server = vd.start_jackd("cantolab-capture-test44", 44_100)
    try:
        infile = vd.write_f32_infile(tmp_path / "src.f32", studio_source.samples[:48_000])
        config = vd.write_alsa_config(tmp_path, infile, paced=True, convert=False)
        device = Device(_env(config, server.env), config, studio_source)
        run = capture_cli(record_args(tmp_path / "REC", "--seconds", "1"), device)
        assert run.returncode == 2, run.stdout + run.stderr
        text = " ".join(run.stderr.split())
        assert "cannot record at 48000 Hz" in text and "never resamples" in text
        assert not list(tmp_path.rglob("*.wav"))
        listing = capture_cli(["devices", "--device", "virtual"], device)
        row = next(line for line in listing.stdout.splitlines() if "→" in line and "44100 Hz" in line)
        assert row.rstrip(" │").endswith("no")
        assert "cantolab_virtual_interface (ALSA): cannot record at 48 kHz / 24-bit" in listing.stdout
    finally:
        server.stop()


def _start_recorder(recordings, device, stdin=subprocess.DEVNULL):
    proc = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "capture", *record_args(recordings)],
        cwd=REPO,
        env=device.env,
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 30
    while not list(recordings.glob("s01/*.json")) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.5)
    return proc


@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", ["Ctrl-C", "Enter"])
def test_ctrl_c_or_enter_end_the_take_cleanly(tmp_path, jack_device, how):
    proc = _start_recorder(tmp_path / "REC", jack_device, stdin=subprocess.PIPE)
    try:
        if how == "Ctrl-C":
            proc.send_signal(signal.SIGINT)
        else:
            proc.stdin.write("\n")
            proc.stdin.flush()
        out, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    wav, js = only_take(tmp_path / "REC" / "s01")
    m = json.loads(js.read_text())
    assert (m["status"], m["end_reason"], m["recovered"]) == ("complete", how, False)
    got, _ = sf.read(wav, dtype="int32")
    assert got.size == m["frames"] and 1.0 * 48_000 < got.size < 10 * 48_000
    assert _max_lsb_error(got, jack_device.source.samples[: got.size]) <= 1
    assert "take summary" in out


@pytest.mark.timeout(60)
def test_a_device_that_stops_delivering_ends_the_take_cleanly(tmp_path, studio_source):
    """The interface goes away mid-take (its JACK server is killed): the take ends with what it had."""
    if not vd.jackd_available():
        pytest.skip("jackd or the ALSA JACK plugin (Debian jackd2, libasound2-plugins) is not installed")
    server = vd.start_jackd("cantolab-capture-testgone", 48_000)
    try:
        infile = vd.write_f32_infile(tmp_path / "src.f32", studio_source.samples)
        config = vd.write_alsa_config(tmp_path, infile, paced=True)
        device = Device(_env(config, server.env), config, studio_source)
        proc = _start_recorder(tmp_path / "REC", device)
        server.stop()  # SIGTERM: the server goes away; its clients just stop being called
        out, _ = proc.communicate(timeout=30)
    finally:
        server.stop()
        if proc.poll() is None:
            proc.kill()
    wav, js = only_take(tmp_path / "REC" / "s01")
    m = json.loads(js.read_text())
    got, _ = sf.read(wav, dtype="int32")
    assert proc.returncode == 1, out
    assert m["status"] == "stopped" and "stopped delivering audio" in m["error"], m
    assert got.size == m["frames"] and got.size >= 1.0 * 48_000
    assert _max_lsb_error(got, studio_source.samples[: got.size]) <= 1

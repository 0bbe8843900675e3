"""Recording through the real CLI from an unpaced, bit-exact ALSA `file` device."""

from __future__ import annotations

import json
import resource

import numpy as np
import soundfile as sf

from capture.levels import CLIP_CODE
from pipeline.audio import load_audio, sha256_file
from tests.capture.conftest import Device, capture_cli, only_take, record_args

MANIFEST_FIELDS = {
    "take_id", "session", "singer", "song", "notes", "device_name", "host_api", "microphone", "sample_rate",
    "subtype", "channels", "started_at", "frames", "seconds", "peak_dbfs", "clipped_samples",
    "input_overflows", "sha256", "tool_version", "recovered",
}  # fmt: skip


def test_recorded_samples_equal_the_source_bit_exactly(tmp_path, null_device):
    src = null_device.source
    seconds = 14.0
    mic_env = Device({**null_device.env, "CANTOLAB_CAPTURE_MICROPHONE": "Neumann TLM 103"}, null_device.config, src)
    run = capture_cli(record_args(tmp_path / "REC", "--seconds", str(seconds), "--notes", "warm-up"), mic_env)
    assert run.returncode == 0, run.stdout + run.stderr
    wav, js = only_take(tmp_path / "REC" / "s01")
    frames = int(seconds * 48_000)
    got, rate = sf.read(wav, dtype="int32")
    info = sf.info(wav)
    assert (rate, info.subtype, info.channels) == (48_000, "PCM_24", 1)
    assert got.size == frames
    assert np.array_equal(got, src.samples[:frames])  # the real clip and the sweep, bit for bit

    m = json.loads(js.read_text())
    assert MANIFEST_FIELDS <= set(m)
    assert m["take_id"] == wav.stem and m["session"] == "s01" and m["singer"] == "ZH-Alto-1"
    assert (m["status"], m["recovered"], m["frames"], m["seconds"]) == ("complete", False, frames, seconds)
    assert (m["sample_rate"], m["subtype"], m["channels"], m["notes"]) == (48_000, "PCM_24", 1, "warm-up")
    assert m["device_name"] == "cantolab_virtual_interface" and m["host_api"] == "ALSA"
    assert m["microphone"] == "Neumann TLM 103" and m["started_at"].endswith("Z")
    assert (m["take_number"], m["may_resample"], m["discarded"]) == (1, True, False)  # an ALSA plug device
    assert "$CANTOLAB_CAPTURE_MICROPHONE" in run.stdout and "may resample" in run.stdout  # the settings, shown first
    assert m["sha256"] == sha256_file(wav)
    peak = np.abs(src.samples[:frames].astype(np.int64)).max() / 2**31
    assert abs(m["peak_dbfs"] - 20 * np.log10(peak)) < 1e-3
    assert m["clipped_samples"] == 0 and m["input_overflows"] == 0 and m["frames_lost"] == 0
    assert "take summary" in run.stdout and m["take_id"] in run.stdout
    assert load_audio(wav).frames == frames  # ingest's loader accepts the take

    # A second take in the same session gets its own id; the first is untouched.
    before = wav.read_bytes()
    again = capture_cli(record_args(tmp_path / "REC", "--seconds", "1"), null_device)
    assert again.returncode == 0, again.stdout + again.stderr
    assert len(list((tmp_path / "REC" / "s01").glob("*.wav"))) == 2
    assert wav.read_bytes() == before
    second = json.loads(next(p for p in (tmp_path / "REC" / "s01").glob("*.json") if p != js).read_text())
    assert (second["take_number"], second["microphone"]) == (2, "")  # numbered per song; no microphone invented
    assert "microphone" in again.stdout and "not set" in again.stdout


def test_clipping_is_counted_warned_and_recorded(tmp_path, null_device, studio_source):
    from capture import virtual_device as vd

    hot = studio_source.samples[:48_000].copy()
    hot[1000:1010] = CLIP_CODE
    hot[2000:2003] = -(2**31)
    (tmp_path / "hot").mkdir()
    config = vd.write_alsa_config(tmp_path / "hot", vd.write_s32_infile(tmp_path / "hot" / "hot.s32", hot))
    device = Device({**null_device.env, "ALSA_CONFIG_PATH": str(config)}, config, null_device.source)
    run = capture_cli(record_args(tmp_path / "REC", "--seconds", "1"), device)
    assert run.returncode == 3, run.stdout + run.stderr  # kept, but clipped: its own exit code
    assert "CLIPPED: 13 samples" in run.stdout
    _, js = only_take(tmp_path / "REC" / "s01")
    m = json.loads(js.read_text())
    assert m["clipped_samples"] == 13
    assert "13 clipped samples" in run.stdout


def test_write_failure_ends_the_take_cleanly(tmp_path, null_device):
    """RLIMIT_FSIZE on the recorder: the write fails mid-take (a real EFBIG, as on a full disk)."""
    limit = 300_000

    def limit_file_size():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    run = capture_cli(record_args(tmp_path / "REC", "--seconds", "10"), null_device, preexec_fn=limit_file_size)
    out = run.stdout + run.stderr
    assert run.returncode == 1, out
    assert "File too large" in out and "stopped early" in out
    wav, js = only_take(tmp_path / "REC" / "s01")
    got, _ = sf.read(wav, dtype="int32")  # readable, header right
    assert got.size == (limit - 44) // 3
    assert np.array_equal(got, null_device.source.samples[: got.size])
    m = json.loads(js.read_text())
    assert (m["status"], m["end_reason"], m["frames"]) == ("stopped", "write error", got.size)
    assert "File too large" in m["error"] and m["sha256"] == sha256_file(wav)


def test_unknown_device_lists_the_devices_there_are(tmp_path, null_device):
    args = record_args(tmp_path / "REC", "--seconds", "1")
    args[args.index("virtual")] = "Scarlett 18i20"
    run = capture_cli(args, null_device)
    assert run.returncode == 2
    assert "no input device matches 'Scarlett 18i20'" in run.stderr
    assert "cantolab_virtual_interface (ALSA)" in run.stderr
    assert not (tmp_path / "REC").exists() or not list((tmp_path / "REC").rglob("*.wav"))


def test_too_little_disk_space_is_refused(tmp_path, null_device):
    args = record_args(tmp_path / "REC", "--seconds", "1")
    args[args.index("--min-free-minutes") + 1] = "1e12"
    run = capture_cli(args, null_device)
    assert run.returncode == 2 and "minutes of 48 kHz / 24-bit audio fit" in run.stderr
    assert not list(tmp_path.rglob("*.wav"))


def test_devices_lists_and_marks_the_configured_device(null_device):
    run = capture_cli(["devices", "--device", "virtual"], null_device)
    assert run.returncode == 0, run.stdout + run.stderr
    row = next(line for line in run.stdout.splitlines() if "cantolab_virtual_interface" in line)
    assert "→" in row and "ALSA" in row and "yes" in row
    assert "configured device: [" in run.stdout and "can record at 48 kHz / 24-bit" in run.stdout

"""Capture: a long paced recording through the JACK dummy device, as in a real session.

The recorder runs as `cantolab capture record` in its own process, fed in real time by an ALSA
`file` device slaved to `jackd -d dummy` (capture/virtual_device.py) reading real GTSinger clips
(generated signal when CANTOLAB_DATA is absent). Reported: frames lost (expected − recorded, plus
any the queue dropped; must be 0), input overflows (0), samples off by more than 1 LSB at 24 bits,
the recorder's CPU share, its peak RSS and RSS growth per minute (flat memory ≈ 0).
CANTOLAB_BENCH_CAPTURE_SECONDS shortens it for a quick look (the reported figure needs ≥ 300).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from benchmarks.common import write_result
from capture import virtual_device as vd

REPO = Path(__file__).resolve().parent.parent
RATE = 48_000


def _source(seconds: float) -> tuple[np.ndarray, str]:
    """Real 24-bit 48 kHz clips end to end, `seconds` long; a generated sweep without the data."""
    from pipeline.data import read_labels, shared_data_dir

    n = int(seconds * RATE)
    if shared_data_dir() is not None:
        table = read_labels("gtsinger")
        paths = sorted(table[(table.subtype == "PCM_24") & (table.sample_rate == RATE)].abs_path)
        parts, total = [], 0
        while total < n and paths:
            for p in paths:
                clip, _ = sf.read(p, dtype="int32", always_2d=True)
                parts.append(clip[:, 0])
                total += clip.shape[0]
                if total >= n:
                    break
        return np.concatenate(parts)[:n], f"{len(parts)} GTSinger 24-bit clips, end to end"
    t = np.arange(n) / RATE
    x = 0.3 * np.sin(2 * np.pi * (110 + 20 * np.sin(2 * np.pi * 0.1 * t)) * t)
    return (np.round(x * 2**23).astype(np.int64) << 8).astype(np.int32), "generated vibrato tone"


def _proc_sample(pid: int) -> tuple[float, int, int] | None:
    """(CPU seconds, RSS bytes, peak RSS bytes) of a live process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    cpu = (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
    fields = {line.split(":")[0]: line.split()[1] for line in status.splitlines() if line.startswith(("VmRSS", "VmHWM"))}
    return cpu, int(fields.get("VmRSS", 0)) * 1024, int(fields.get("VmHWM", 0)) * 1024


def main() -> dict:
    seconds = float(os.environ.get("CANTOLAB_BENCH_CAPTURE_SECONDS", "300"))
    if not vd.jackd_available():
        raise RuntimeError("jackd and the ALSA JACK plugin are needed (Debian jackd2, libasound2-plugins)")
    source, source_text = _source(seconds + 5)
    with tempfile.TemporaryDirectory(prefix="cantolab-bench-capture-") as tmp:
        tmp = Path(tmp)
        infile = vd.write_f32_infile(tmp / "source.f32", source)
        config = vd.write_alsa_config(tmp, infile, paced=True)
        server = vd.start_jackd("cantolab-capture-bench", RATE)
        try:
            env = {k: v for k, v in os.environ.items() if not k.startswith("JACK_")}
            env.update(server.env, ALSA_CONFIG_PATH=str(config), PYTHONPATH=str(REPO))
            cmd = [sys.executable, "-m", "flows.cli", "capture", "record", "--session", "bench", "--singer", "bench",
                   "--song", "long take", "--device", "virtual", "--seconds", str(seconds),
                   "--recordings", str(tmp / "REC"), "--min-free-minutes", "1"]  # fmt: skip
            t0 = time.monotonic()
            log = tmp / "recorder.log"  # a file, not a pipe: nothing the recorder prints can block it
            proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=log.open("wb"), stderr=subprocess.STDOUT)
            samples = []  # (t, cpu, rss, hwm, frames on disk) once the take is running
            while proc.poll() is None:
                wavs = list((tmp / "REC").glob("bench/*.wav"))
                if wavs:
                    s = _proc_sample(proc.pid)
                    if s:
                        samples.append((time.monotonic() - t0, *s, max(0, wavs[0].stat().st_size - 44) // 3))
                time.sleep(1.0)
            out = log.read_text(errors="replace")
            wall = time.monotonic() - t0
        finally:
            server.stop()
        if proc.returncode != 0:
            raise RuntimeError(f"recorder exited with {proc.returncode}:\n{out[-2000:]}")
        wav = next((tmp / "REC" / "bench").glob("*.wav"))
        manifest = json.loads(wav.with_suffix(".json").read_text())
        got, _ = sf.read(wav, dtype="int32")
    expected = int(round(seconds * RATE))
    n = min(got.size, expected)
    off = np.abs((got[:n].astype(np.int64) >> 8) - (source[:n].astype(np.int64) >> 8))
    # Recording phase only: skip the first 10 s (imports, device probing, stream start).
    steady = [s for s in samples if s[0] - samples[0][0] >= 10.0] if samples else []
    t = np.array([s[0] for s in steady])
    cpu = np.array([s[1] for s in steady])
    rss = np.array([s[2] for s in steady], dtype=np.float64)
    growth = float(np.polyfit(t / 60.0, rss / 2**20, 1)[0]) if t.size >= 3 else float("nan")
    on_disk = np.array([s[4] for s in steady], dtype=np.float64)
    # Audio seconds written per wall second mid-take: 1.0 when the device clock runs in real time.
    pace = float((on_disk[-2] - on_disk[0]) / RATE / (t[-2] - t[0])) if t.size >= 3 else float("nan")
    result = {
        "command": "make bench  (or: .venv/bin/python -m benchmarks capture)",
        "device": "ALSA file PCM → JACK plugin → jackd --no-realtime -d dummy -r 48000 -p 1024 (paced, float32 infile)",
        "source": source_text,
        "seconds_requested": seconds,
        "frames_expected": expected,
        "frames_recorded": int(got.size),
        "frames_lost": int(expected - got.size) + int(manifest["frames_lost"]),
        "input_overflows": int(manifest["input_overflows"]),
        "samples_off_by_more_than_1_lsb": int(np.count_nonzero(off > 1)),
        "max_error_lsb_24bit": int(off.max()) if n else None,
        "status": manifest["status"],
        "wall_seconds": round(wall, 2),
        "audio_seconds_per_wall_second": round(pace, 4),
        "recorder_cpu_share": round(float((cpu[-1] - cpu[0]) / (t[-1] - t[0])), 4) if t.size >= 2 else None,
        "recorder_cpu_share_note": "CPU seconds / wall seconds of the recorder process while recording (1.0 = one core)",
        "recorder_peak_rss_mib": round(max(s[3] for s in samples) / 2**20, 1) if samples else None,
        "recorder_rss_start_mib": round(rss[0] / 2**20, 1) if rss.size else None,
        "recorder_rss_end_mib": round(rss[-1] / 2**20, 1) if rss.size else None,
        "recorder_rss_growth_mib_per_min": round(growth, 3),
        "rss_samples": len(steady),
    }
    return write_result("capture", result)


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))

"""A real PortAudio input device without a sound card, for tests, benchmarks and trying the tool.

ALSA's `file` plugin returns the bytes of an `infile` as captured audio. Slaved to the `null` PCM
it is unpaced and bit-exact (S32_LE infile); slaved to the JACK plugin on a `jackd -d dummy`
server it runs in real time (FLOAT_LE infile, JACK's own format). The written config replaces the
system alsa.conf, so it defines everything PortAudio needs, `pcm.!default` included (PortAudio
19.6 aborts without one). Point ALSA_CONFIG_PATH at it before PortAudio initializes.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.fsio import atomic_write_text

DEVICE_NAME = "cantolab_virtual_interface"


def write_s32_infile(path: Path, samples_int32: np.ndarray) -> Path:
    """Mono (frames,) or interleaved multichannel (frames, channels) 32-bit samples."""
    np.ascontiguousarray(samples_int32, dtype="<i4").tofile(path)
    return path


def write_f32_infile(path: Path, samples_int32: np.ndarray) -> Path:
    """24-bit audio as float32 (exact: 24 bits fit a float32 mantissa)."""
    (np.asarray(samples_int32, dtype=np.float64) / 2**31).astype("<f4").tofile(path)
    return path


def alsa_config(infile: Path, *, paced: bool = False, name: str = DEVICE_NAME, convert: bool = True, channels: int = 1) -> str:
    """`convert=False` leaves out ALSA's `plug` layer: the device then only runs at the JACK
    server's own rate, like an interface locked to its clock (what a 44.1 kHz-only device test needs).
    `channels` > 1 (unpaced only): an N-channel interface whose infile holds interleaved frames; a
    client opening fewer channels gets ALSA plug's down-mix of them, not the first ones."""
    if paced:
        slave = "pcm.cantolab_jack { type jack; capture_ports { 0 system:capture_1 } }\n"
        slave_ref, fmt = '"cantolab_jack"', "FLOAT_LE"
    else:
        slave, slave_ref, fmt = "", "{ type null }", "S32_LE"
    return (
        f"# Written by capture.virtual_device: a capture device reading {infile}\n"
        + slave
        + f'pcm.cantolab_file {{ type file; slave.pcm {slave_ref}; file "/dev/null"; infile "{infile}"; format "raw" }}\n'
        + (
            f'pcm.{name} {{ type plug; slave {{ pcm "cantolab_file"; format {fmt}; rate 48000; channels {channels} }} }}\n'
            if convert
            else f'pcm.{name} {{ type file; slave.pcm {slave_ref}; file "/dev/null"; infile "{infile}"; format "raw" }}\n'
        )
        + f'pcm.!default "{name}"\n'
    )


def write_alsa_config(folder: Path, infile: Path, *, paced: bool = False, convert: bool = True, channels: int = 1) -> Path:
    path = Path(folder) / ("asound-paced.conf" if paced else "asound.conf")
    atomic_write_text(path, alsa_config(Path(infile).resolve(), paced=paced, convert=convert, channels=channels))
    return path


@dataclass
class JackServer:
    """`jackd --no-realtime -d dummy` under its own server name; stop() ends only this process."""

    name: str
    rate: int
    process: subprocess.Popen

    @property
    def env(self) -> dict[str, str]:
        return {"JACK_DEFAULT_SERVER": self.name, "JACK_NO_START_SERVER": "1"}

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def jackd_available() -> bool:
    return shutil.which("jackd") is not None and any(
        Path(d, "libasound_module_pcm_jack.so").exists()
        for d in ("/usr/lib/x86_64-linux-gnu/alsa-lib", "/usr/lib/aarch64-linux-gnu/alsa-lib", "/usr/lib/alsa-lib")
    )


def start_jackd(name: str, rate: int = 48_000, period: int = 1024, log: Path | None = None) -> JackServer:
    """Start a dummy-driver JACK server and wait until clients can connect.

    Use a fixed `name` per purpose: JACK's shared registry holds few servers and only frees the
    slot of a dead server when a server of the same name starts again.
    """
    if log is None:
        fd, name_ = tempfile.mkstemp(prefix=f"{name}-", suffix=".log")
        os.close(fd)
        log = Path(name_)
    out = open(log, "wb")
    proc = subprocess.Popen(
        ["jackd", "--no-realtime", "-n", name, "-d", "dummy", "-r", str(rate), "-p", str(period), "-C", "2", "-P", "2"],
        stdout=out,
        stderr=subprocess.STDOUT,
        env={**os.environ, "JACK_NO_AUDIO_RESERVATION": "1"},
    )
    server = JackServer(name, rate, proc)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = Path(log).read_text(errors="replace")[-1500:]
            raise RuntimeError(f"jackd exited with {proc.returncode}; its log ({log}) ends:\n{tail}")
        probe = subprocess.run(
            ["jack_lsp"] if shutil.which("jack_lsp") else ["true"],
            env={**os.environ, **server.env},
            capture_output=True,
            text=True,
        )
        if "system:capture_1" in probe.stdout or not shutil.which("jack_lsp"):
            if not shutil.which("jack_lsp"):
                time.sleep(1.5)
            return server
        time.sleep(0.2)
    server.stop()
    raise RuntimeError("jackd did not come up within 15 s")


class VirtualDeviceError(RuntimeError):
    """The virtual input cannot start (bad audio file, no jackd); the message says what to do."""


@dataclass
class VirtualDevice:
    folder: Path
    device: str
    env: dict[str, str]


_STATE = "virtual-device.json"
_JACK_NAME = "cantolab-virtual"


def _infile_samples(audio: Path) -> np.ndarray:
    """The file's first channel as 24-bit audio in int32, at 48 kHz (resampled when it is not)."""
    import soundfile as sf

    from pipeline.preprocess import resample

    try:
        data, rate = sf.read(audio, dtype="float64", always_2d=True)
    except (RuntimeError, sf.LibsndfileError) as exc:
        raise VirtualDeviceError(f"{audio}: not a readable WAV/FLAC ({exc})") from None
    x = data[:, 0]
    if rate != 48_000:
        x = resample(x, rate, 48_000)
    return (np.round(np.clip(x, -1.0, 1.0 - 2**-23) * 2**23).astype(np.int64) << 8).astype(np.int32)


def start_virtual_device(audio: Path, folder: Path, *, paced: bool = True) -> VirtualDevice:
    """Write the device's files into `folder` (and start a JACK dummy server when paced)."""
    import json

    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    if (folder / _STATE).exists():
        stop_virtual_device(folder)
    samples = _infile_samples(Path(audio))
    env = {"CANTOLAB_CAPTURE_DEVICE": "virtual"}
    pid = None
    if paced:
        if not jackd_available():
            raise VirtualDeviceError(
                "a paced virtual input needs jackd and the ALSA JACK plugin (Debian jackd2, libasound2-plugins); or use --unpaced"
            )
        infile = write_f32_infile(folder / "source.f32", samples)
        # One server name per folder: a second virtual input elsewhere does not collide with this one.
        name = f"{_JACK_NAME}-{hashlib.sha1(str(folder).encode()).hexdigest()[:8]}"
        try:
            server = start_jackd(name, log=folder / "jackd.log")
        except RuntimeError as exc:
            raise VirtualDeviceError(str(exc)) from None
        if server.process.poll() is not None:
            raise VirtualDeviceError(f"jackd {name} exited at once (is a server of that name running?); see {folder / 'jackd.log'}")
        pid = server.process.pid
        env.update(server.env)
    else:
        infile = write_s32_infile(folder / "source.s32", samples)
    config = write_alsa_config(folder, infile, paced=paced)
    env["ALSA_CONFIG_PATH"] = str(config)
    state = {"pid": pid, "cmdline": _cmdline(pid) if pid else None, "env": env}
    (folder / _STATE).write_text(json.dumps(state, indent=2))
    return VirtualDevice(folder, DEVICE_NAME, env)


def _cmdline(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return None


def stop_virtual_device(folder: Path) -> str:
    """End the JACK server `start` left running, only if that PID is still our jackd."""
    import json

    path = Path(folder).resolve() / _STATE
    if not path.exists():
        return f"no virtual input was started from {folder}"
    state = json.loads(path.read_text())
    pid = state.get("pid")
    said = "virtual input stopped"
    if pid:
        now = _cmdline(pid)
        if now and now == state.get("cmdline") and _JACK_NAME in now:
            os.kill(pid, signal.SIGTERM)
            for _ in range(50):
                if _cmdline(pid) is None or not Path(f"/proc/{pid}").exists():
                    break
                time.sleep(0.1)
            said = f"virtual input stopped (jackd {pid} ended)"
        else:
            said = f"virtual input files removed (jackd {pid} was already gone)"
    path.unlink()
    return said

"""Record one take: PortAudio callback → bounded queue → writer thread → WAV on disk.

The callback only copies the chosen channel into a bounded queue (it never blocks or touches the
disk). A writer thread appends blocks to a `WavStreamWriter`, fixing the header and fsync'ing at
least every `flush_seconds`, so a killed process loses at most that much; `recover` does the rest.
A write error (disk full, file-size limit) ends the take cleanly with what was written kept.
"""

from __future__ import annotations

import errno
import fcntl
import os
import queue
import shutil
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from capture.devices import SAMPLE_RATE, CaptureError, InputDevice, check_device, resolve_device
from capture.levels import Meter
from capture.manifest import (
    TOOL_VERSION,
    TakeManifest,
    TakeStatus,
    claim_take,
    manifest_path,
    safe_component,
    utc_now_iso,
    write_manifest,
)
from capture.terminal import ENTER, Keys
from capture.wavstream import BYTES_PER_SAMPLE, WavStreamWriter
from pipeline.audio import sha256_file

_STOP = object()


@dataclass
class TakeRequest:
    session: str
    singer: str
    song: str
    recordings: Path = Path("RECORDINGS")
    notes: str = ""
    microphone: str = ""  # as set for the session; never filled in with a guess
    language: str | None = None
    take_number: int | None = None  # per song within the session (session.next_take_number)
    device: str | int | None = None
    channel: int = 1  # 1-based input channel of the interface
    seconds: float | None = None  # None: until stopped
    min_free_minutes: float = 30.0  # refuse to start with less disk than this much audio
    flush_seconds: float = 1.0
    queue_seconds: float = 20.0  # how much audio the queue holds while the disk stalls
    blocksize: int = 1024
    # The recorder does not monitor, so a long input buffer costs nothing and rides out moments
    # when the machine is busy (PortAudio's suggested input latency, in seconds).
    latency: float = 0.5
    checkpoint_seconds: float = 5.0  # manifest counters refreshed this often during the take


@dataclass
class LiveStats:
    elapsed: float
    frames: int
    peak_dbfs: float  # since the previous snapshot
    rms_dbfs: float
    take_peak_dbfs: float
    clipped_samples: int
    input_overflows: int
    frames_lost: int
    queue_blocks: int
    new_clips: int = 0
    new_overflows: int = 0


@dataclass
class TakeResult:
    manifest: TakeManifest
    wav_path: Path
    manifest_path: Path
    warnings: list[str] = field(default_factory=list)
    device_hung: bool = False  # the device died or would not close: exit without PortAudio's clean-up

    @property
    def ok(self) -> bool:
        return self.manifest.status == TakeStatus.COMPLETE


def free_minutes(folder: Path, channels: int = 1) -> float:
    """Minutes of 48 kHz / 24-bit audio that fit in the free space of `folder`'s file system."""
    probe = folder
    while not probe.exists():
        probe = probe.parent
    return shutil.disk_usage(probe).free / (SAMPLE_RATE * BYTES_PER_SAMPLE * channels * 60)


class Recorder:
    def __init__(self, request: TakeRequest):
        self.req = request
        self.meter = Meter()
        self.overflows = 0
        self.frames_lost = 0
        self.error: str = ""
        self.end_reason = ""
        self.done_event = threading.Event()
        self._clips_seen = 0
        self._offered = 0  # frames the callback has seen during the take
        self.last_block_at = 0.0
        self.device_hung = False
        self._overflows_seen = 0
        self._t0 = 0.0
        max_blocks = max(4, int(request.queue_seconds * SAMPLE_RATE / request.blocksize))
        self._queue: queue.Queue = queue.Queue(maxsize=max_blocks)
        self._stream = None
        self._writer: WavStreamWriter | None = None
        self._thread: threading.Thread | None = None
        self._reserve: Path | None = None
        self.device: InputDevice | None = None
        self.manifest: TakeManifest | None = None
        self.wav_path: Path | None = None
        self.target_frames = int(round(request.seconds * SAMPLE_RATE)) if request.seconds else None

    # -- start ---------------------------------------------------------------------------------
    def start(self) -> TakeManifest:
        req = self.req
        session = safe_component(req.session, "session")
        safe_component(req.singer, "singer")
        self.device = resolve_device(req.device)
        check_device(self.device, req.channel)
        session_dir = Path(req.recordings) / session
        minutes = free_minutes(session_dir)
        if minutes < req.min_free_minutes:
            raise CaptureError(
                f"only {minutes:.1f} minutes of 48 kHz / 24-bit audio fit on the disk holding {session_dir} "
                f"(the minimum is {req.min_free_minutes:g}); free space or lower --min-free-minutes"
            )
        # A full disk or a file-size limit must surface as an OSError, not kill the process.
        if threading.current_thread() is threading.main_thread() and hasattr(signal, "SIGXFSZ"):
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        try:
            take_id, wav, fd = claim_take(session_dir, req.singer)
        except OSError as exc:  # read-only file system, no permission, …
            raise CaptureError(
                f"cannot create a take in {session_dir}: {exc.strerror or exc}. Check that the recordings folder "
                "is writable (mounted read-write, owned by you) or choose another with --recordings"
            ) from None
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # `recover` leaves a locked (live) take alone
        self.wav_path = wav
        try:
            self._reserve = _reserve_space(session_dir / f".{take_id}.reserve")
        except OSError as exc:
            os.close(fd)
            wav.unlink(missing_ok=True)
            raise CaptureError(f"cannot write in {session_dir}: {exc.strerror or exc}; free some space first") from None
        self.manifest = TakeManifest(
            take_id=take_id,
            session=session,
            singer=req.singer,
            song=req.song,
            notes=req.notes,
            device_name=self.device.name,
            host_api=self.device.host_api,
            microphone=req.microphone,
            input_channel=req.channel,
            started_at=utc_now_iso(),
            status=TakeStatus.RECORDING,
            tool_version=TOOL_VERSION,
            language=req.language,
            take_number=req.take_number,
            may_resample=self.device.may_resample,
        )
        try:
            self._writer = WavStreamWriter(wav, SAMPLE_RATE, fd=fd)
            self._writer.flush()
            write_manifest(manifest_path(wav), self.manifest)
        except OSError as exc:
            if self._writer is not None:
                self._writer.close()
            else:
                os.close(fd)
            self._release_reserve()
            manifest_path(wav).unlink(missing_ok=True)
            wav.unlink(missing_ok=True)
            raise CaptureError(f"cannot write in {session_dir}: {exc.strerror or exc}; free some space first") from None
        self._thread = threading.Thread(target=self._write_loop, name="capture-writer", daemon=True)
        self._thread.start()
        import sounddevice as sd

        try:
            self._stream = sd.InputStream(
                device=self.device.index,
                channels=req.channel,
                samplerate=SAMPLE_RATE,
                dtype="int32",
                blocksize=req.blocksize,
                latency=req.latency,
                callback=self._callback,
            )
            self._t0 = time.monotonic()
            self.manifest.started_at = utc_now_iso()
            self._stream.start()
        except Exception as exc:
            self.error = f"could not start the input stream: {exc}"
            self.end_reason = "error"
            result = self.finish()
            if result.manifest.frames == 0:  # nothing was recorded: leave no empty take behind
                result.wav_path.unlink(missing_ok=True)
                result.manifest_path.unlink(missing_ok=True)
            raise CaptureError(f"{self.device.label()}: {self.error}") from exc
        write_manifest(manifest_path(wav), self.manifest)  # the start time of the audio itself
        return self.manifest

    # -- realtime side ---------------------------------------------------------------------------
    def _callback(self, indata, frames, time_info, status) -> None:
        # Once the take has ended (or has all the frames it asked for) the stream only runs out.
        if self.done_event.is_set() or (self.target_frames is not None and self._offered >= self.target_frames):
            return
        self.last_block_at = time.monotonic()
        if status.input_overflow:
            self.overflows += 1
        self._offered += frames
        try:
            self._queue.put_nowait(indata[:, self.req.channel - 1].copy())
        except queue.Full:
            self.frames_lost += frames

    # -- writer thread ---------------------------------------------------------------------------
    def _write_loop(self) -> None:
        writer = self._writer
        last_flush = last_checkpoint = time.monotonic()
        while True:
            try:
                block = self._queue.get(timeout=0.1)
            except queue.Empty:
                block = None
            if block is _STOP:
                break
            if block is not None and not self.error:  # blocks queued before a stop are audio: keep them
                if self.target_frames is not None:
                    block = block[: max(0, self.target_frames - writer.frames)]
                try:
                    writer.write(block)
                except OSError as exc:
                    self.error, self.end_reason = _write_error(exc, writer.frames, self.wav_path.parent)
                    self.done_event.set()
                self.meter.update(block)
                if self.target_frames is not None and writer.frames >= self.target_frames:
                    self.end_reason = self.end_reason or f"reached {self.req.seconds:g} s"
                    self.done_event.set()
            now = time.monotonic()
            if now - last_flush >= self.req.flush_seconds:
                self._safe_flush()
                last_flush = now
            if now - last_checkpoint >= self.req.checkpoint_seconds:
                self._checkpoint()
                last_checkpoint = now

    def _safe_flush(self) -> None:
        try:
            self._writer.flush()
        except OSError as exc:
            if not self.error:
                self.error = f"flush failed: {exc}"
                self.end_reason = "write error"
            self.done_event.set()

    def _checkpoint(self) -> None:
        """Counters so far into the manifest, so a recovered take still knows its overflows."""
        m = self.manifest
        m.input_overflows, m.frames_lost, m.clipped_samples = self.overflows, self.frames_lost, self.meter.clipped_samples
        try:
            write_manifest(manifest_path(self.wav_path), m)
        except OSError:
            pass  # the final write reports it; audio comes first

    # -- control ---------------------------------------------------------------------------------
    def check_stalled(self, after_seconds: float = 3.0) -> bool:
        """End the take with an error when the device stops delivering audio (unplugged, driver died)."""
        since = time.monotonic() - (self.last_block_at or self._t0)
        if self._t0 and since > after_seconds and not self.done_event.is_set():
            self.error = f"the device stopped delivering audio for {since:.1f} s (unplugged or its driver stopped)"
            self.end_reason = "device stopped"
            self.done_event.set()
            return True
        return False

    def request_stop(self, reason: str) -> None:
        if not self.end_reason:
            self.end_reason = reason
        self.done_event.set()

    def snapshot(self) -> LiveStats:
        peak, rms = self.meter.take_recent()
        clips, overflows = self.meter.clipped_samples, self.overflows
        stats = LiveStats(
            elapsed=time.monotonic() - self._t0 if self._t0 else 0.0,
            frames=self._writer.frames if self._writer else 0,
            peak_dbfs=peak,
            rms_dbfs=rms,
            take_peak_dbfs=self.meter.peak_dbfs,
            clipped_samples=clips,
            input_overflows=overflows,
            frames_lost=self.frames_lost,
            queue_blocks=self._queue.qsize(),
            new_clips=clips - self._clips_seen,
            new_overflows=overflows - self._overflows_seen,
        )
        self._clips_seen, self._overflows_seen = clips, overflows
        return stats

    def finish(self) -> TakeResult:
        """Close the file and finish the manifest first, then close the stream. Call once.

        The audio is made safe before PortAudio is asked to stop, because stopping a device that
        has gone away can block for ever; that close runs in a helper thread with a time limit.
        """
        self.done_event.set()  # the callback hands over nothing more
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join()
        writer = self._writer
        warnings = []
        try:
            writer.close()
        except OSError as exc:
            self.error = self.error or f"closing the file failed: {exc}"
        m = self.manifest
        m.frames = writer.frames
        m.seconds = writer.frames / SAMPLE_RATE
        m.peak_dbfs = round(self.meter.peak_dbfs, 3) if self.meter.frames and self.meter.peak > 0 else None
        m.clipped_samples = self.meter.clipped_samples
        m.input_overflows = self.overflows
        m.frames_lost = self.frames_lost
        m.sha256 = sha256_file(self.wav_path)
        m.ended_at = utc_now_iso()
        m.end_reason = self.end_reason or "stopped"
        m.error = self.error
        m.status = TakeStatus.STOPPED if self.error else TakeStatus.COMPLETE
        if m.clipped_samples:
            warnings.append(f"{m.clipped_samples} clipped samples: lower the gain and consider another take")
        if m.input_overflows:
            warnings.append(f"{m.input_overflows} input overflows: audio was dropped by the interface driver")
        if m.frames_lost:
            warnings.append(f"{m.frames_lost} frames lost: the disk could not keep up")
        self._release_reserve()  # a full disk has room for the final manifest again
        try:
            write_manifest(manifest_path(self.wav_path), m)
        except OSError as exc:
            m.error = m.error or f"the manifest could not be written: {exc.strerror or exc}"
            warnings.append(
                f"the manifest could not be finished ({exc.strerror or exc}); the audio is safe: once the disk has room, "
                "`cantolab capture recover` completes it"
            )
            m.status = TakeStatus.STOPPED
        # A device that died can also make PortAudio's exit clean-up hang or abort: flag it too.
        self.device_hung = not self._close_stream() or self.end_reason == "device stopped"
        if self.device_hung:
            warnings.append("the audio device did not close cleanly (the take is safe on disk)")
        return TakeResult(
            manifest=m, wav_path=self.wav_path, manifest_path=manifest_path(self.wav_path), warnings=warnings, device_hung=self.device_hung
        )

    def _release_reserve(self) -> None:
        if self._reserve is not None:
            self._reserve.unlink(missing_ok=True)
            self._reserve = None

    def _close_stream(self, timeout: float = 5.0) -> bool:
        stream, self._stream = self._stream, None
        if stream is None:
            return True

        def close() -> None:
            try:
                stream.abort()
                stream.close()
            except Exception:
                pass  # the take is already safe; nothing more to save here

        closer = threading.Thread(target=close, name="capture-close", daemon=True)
        closer.start()
        closer.join(timeout)
        return not closer.is_alive()


# Room kept on the take's disk (a hidden file, removed when the take ends) so that the final manifest
# can always be written, even when the audio has filled the disk.
RESERVE_BYTES = 256 * 1024


def _reserve_space(path: Path, size: int = RESERVE_BYTES) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, b"\0" * size)  # real blocks (a sparse file or fallocate could be refused later)
        os.fsync(fd)
    except OSError:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)
    return path


def _write_error(exc: OSError, frames: int, folder: Path) -> tuple[str, str]:
    """(error, end_reason) for a failed audio write, in the engineer's words."""
    saved = f"{frames / SAMPLE_RATE:.2f} s"
    if exc.errno == errno.ENOSPC:
        return f"the disk holding {folder} is full (No space left on device) after {saved}", "disk full"
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    return f"write failed after {saved}: {reason} ({exc.__class__.__name__})", "write error"


def record_take(
    request: TakeRequest,
    on_start: Callable[[Recorder], None] | None = None,
    on_tick: Callable[[LiveStats], None] | None = None,
    tick_seconds: float = 0.25,
    keys: Keys | None = None,
) -> TakeResult:
    """Record until `seconds`, a stop key (Enter, space, q; when `keys` is given), Ctrl-C, or a write error."""
    rec = Recorder(request)
    rec.start()
    if on_start:
        on_start(rec)
    watcher = None
    if keys is not None:
        watcher = threading.Thread(target=_watch_keys, args=(rec, keys), name="capture-keys", daemon=True)
        watcher.start()
    try:
        while not rec.done_event.wait(tick_seconds):
            if on_tick:
                on_tick(rec.snapshot())
            rec.check_stalled()
    except KeyboardInterrupt:
        rec.request_stop("Ctrl-C")
    if on_tick:
        on_tick(rec.snapshot())
    # A second Ctrl-C while closing must not cut the file short.
    previous = signal.getsignal(signal.SIGINT) if threading.current_thread() is threading.main_thread() else None
    if previous is not None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        return rec.finish()
    finally:
        if watcher is not None:
            watcher.join(1.0)  # it stops reading keys once the take is done: the next prompt gets them
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


STOP_KEYS = {ENTER: "Enter", " ": "space", "q": "q", "\x1b": "Esc"}


def _watch_keys(rec: Recorder, keys: Keys) -> None:
    while not rec.done_event.is_set():
        key = keys.key(0.1)
        if key in STOP_KEYS:
            rec.request_stop(STOP_KEYS[key])
            return
        if keys.eof:  # end of input (no terminal, stdin closed) is not a request to stop
            return


class Listener:
    """An open input stream from which short recordings are kept in memory (the level check).

    One stream for all steps, so nothing is re-opened between them; audio that arrives while no
    step is recording is dropped.
    """

    def __init__(self, device: str | int | None, channel: int):
        self.device = resolve_device(device)
        check_device(self.device, channel)
        self.channel = channel
        self._lock = threading.Lock()
        self._want = 0
        self._blocks: list[np.ndarray] = []
        self._got = 0
        self._overflows = 0
        self._done = threading.Event()
        self._stream = None

    def _callback(self, indata, n, time_info, status) -> None:
        with self._lock:
            if self._got >= self._want:
                return
            if status.input_overflow:
                self._overflows += 1
            block = indata[: self._want - self._got, self.channel - 1].copy()
            self._blocks.append(block)
            self._got += block.size
            if self._got >= self._want:
                self._done.set()

    def __enter__(self) -> Listener:
        import sounddevice as sd

        # The recorder's block size and long input buffer: a busy machine does not starve the stream.
        self._stream = sd.InputStream(
            device=self.device.index, channels=self.channel, samplerate=SAMPLE_RATE, dtype="int32",
            blocksize=1024, latency=0.5, callback=self._callback,
        )  # fmt: skip
        self._stream.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stream.close()

    def record(self, seconds: float) -> tuple[np.ndarray, int]:
        """(int32 samples, input overflows) of the next `seconds` of input."""
        with self._lock:
            self._want, self._got, self._blocks, self._overflows = int(round(seconds * SAMPLE_RATE)), 0, [], 0
            self._done.clear()
        if not self._done.wait(seconds * 3 + 5):
            raise CaptureError(f"{self.device.label()} delivered only {self._got} of {self._want} frames: is it running?")
        with self._lock:
            self._want = 0
            return np.concatenate(self._blocks), self._overflows

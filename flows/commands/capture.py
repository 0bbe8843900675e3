"""`cantolab capture`: devices, record, check, recover (the recording engineer's commands)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from flows.commands._errors import fail, user_errors

DEFAULT_RECORDINGS = Path(os.environ.get("CANTOLAB_RECORDINGS", "RECORDINGS"))
DEVICE_HELP = (
    "Input device: index, or part of its name (e.g. the interface's model). "
    "Default: $CANTOLAB_CAPTURE_DEVICE, else the system default input."
)

capture_app = typer.Typer(
    help="Record studio takes (48 kHz / 24-bit mono WAV + take manifest); a take is never lost.",
    no_args_is_help=True,
)


def _device_option(value: Optional[str]) -> Optional[str]:
    return value if value not in (None, "") else os.environ.get("CANTOLAB_CAPTURE_DEVICE") or None


@capture_app.command("devices")
def devices(device: Optional[str] = typer.Option(None, "--device", "-d", help=DEVICE_HELP)) -> None:
    """List input devices: host API, inputs, default rate, and whether each can open 48 kHz / 24-bit."""
    from capture.devices import CaptureError, list_input_devices, resolve_device
    from capture.display import console, devices_table

    out = console()
    found = list_input_devices()
    chosen = None
    problem = ""
    try:
        chosen = resolve_device(_device_option(device), found) if found else None
    except CaptureError as exc:
        problem = str(exc)
    out.print(devices_table(found, chosen))
    if chosen is not None:
        state = "can record at 48 kHz / 24-bit" if chosen.can_48k_24bit else "[red]cannot record at 48 kHz / 24-bit[/]"
        out.print(f"→ configured device: {chosen.label()}: {state}")
    if problem:
        fail(problem)


@capture_app.command("record")
def record(
    session: str = typer.Option(..., "--session", "-s", help="Session name; takes go to RECORDINGS/<session>/."),
    singer: str = typer.Option(..., "--singer", help="Singer id (as used in the dataset)."),
    song: str = typer.Option(..., "--song", help="Song title."),
    notes: str = typer.Option("", "--notes", help="Performer notes kept in the manifest."),
    device: Optional[str] = typer.Option(None, "--device", "-d", help=DEVICE_HELP),
    channel: int = typer.Option(1, "--channel", "-c", min=1, help="Input channel of the interface (1 = first)."),
    seconds: Optional[float] = typer.Option(None, "--seconds", "-n", min=0.01, help="Stop after N seconds (default: Enter or Ctrl-C)."),
    microphone: str = typer.Option("Neumann TLM 103", "--microphone", help="Microphone, for the manifest."),
    recordings: Path = typer.Option(DEFAULT_RECORDINGS, "--recordings", "-r", help="Recordings folder ($CANTOLAB_RECORDINGS)."),
    min_free_minutes: float = typer.Option(30.0, "--min-free-minutes", help="Refuse to start with less free disk than this many minutes of audio."),
    flush_seconds: float = typer.Option(1.0, "--flush-seconds", min=0.05, max=1.0, help="Make the file durable at least this often."),
) -> None:
    """Record one take until N seconds, Enter or Ctrl-C: RECORDINGS/<session>/<take_id>.wav + .json."""
    from rich.live import Live

    from capture.display import console, live_panel, summary_panel
    from capture.recorder import TakeRequest, record_take

    out = console()
    req = TakeRequest(
        session=session,
        singer=singer,
        song=song,
        notes=notes,
        device=_device_option(device),
        channel=channel,
        seconds=seconds,
        microphone=microphone,
        recordings=recordings,
        min_free_minutes=min_free_minutes,
        flush_seconds=flush_seconds,
    )
    live = Live(console=out, refresh_per_second=4, transient=True)
    title = f"{session} · {singer} · {song}"
    warned = {"clip": 0.0, "overflow": 0.0}

    def on_start(rec) -> None:
        out.print(f"recording [bold]{rec.manifest.take_id}[/] from {rec.device.label()} channel {channel} → {rec.wav_path}")
        live.start()

    def on_tick(stats) -> None:
        live.update(live_panel(stats, title, seconds))
        if stats.new_clips and stats.elapsed - warned["clip"] >= 1.0:
            warned["clip"] = stats.elapsed
            live.console.print(f"[yellow]⚠ clipping at {stats.elapsed:.1f} s ({stats.clipped_samples} samples so far)[/]")
        if stats.new_overflows and stats.elapsed - warned["overflow"] >= 1.0:
            warned["overflow"] = stats.elapsed
            live.console.print(f"[yellow]⚠ input overflow at {stats.elapsed:.1f} s ({stats.input_overflows} so far)[/]")

    with user_errors():
        try:
            result = record_take(req, on_start=on_start, on_tick=on_tick, watch_enter=True)
        finally:
            live.stop()
    out.print(summary_panel(result))
    if result.device_hung:  # PortAudio's exit handler would hang on the dead device; all is on disk
        out.file.flush()
        os._exit(1)
    if not result.ok:
        raise typer.Exit(1)


@capture_app.command("check")
def check(
    device: Optional[str] = typer.Option(None, "--device", "-d", help=DEVICE_HELP),
    channel: int = typer.Option(1, "--channel", "-c", min=1, help="Input channel of the interface (1 = first)."),
    seconds: float = typer.Option(5.0, "--seconds", "-n", min=0.5, help="Length of the test recording."),
) -> None:
    """Level check before a session: noise floor, peak, DC offset and clipping (nothing is saved)."""
    from capture.display import console, level_report_panel
    from capture.levels import analyse
    from capture.recorder import SAMPLE_RATE, record_to_memory

    out = console()
    with user_errors(), out.status(f"listening for {seconds:g} s: sing the loudest passage…"):
        samples, dev, overflows = record_to_memory(_device_option(device), channel, seconds)
    out.print(level_report_panel(analyse(samples, SAMPLE_RATE, overflows), dev, channel))


@capture_app.command("recover")
def recover(recordings: Path = typer.Argument(DEFAULT_RECORDINGS, help="Recordings folder to scan (all sessions).")) -> None:
    """Repair takes of a killed recorder: fix the WAV header, keep every flushed frame, mark `recovered`."""
    from rich.table import Table

    from capture.display import console
    from capture.recover import recover_all

    out = console()
    with user_errors(FileNotFoundError):
        outcomes = recover_all(recordings)
    table = Table(title=f"Takes under {recordings}")
    for col in ("take", "action", "seconds"):
        table.add_column(col)
    for o in outcomes:
        style = "green" if o.recovered else "red" if o.action.startswith("failed") else "dim"
        table.add_row(str(o.wav_path.relative_to(recordings)), f"[{style}]{o.action}[/]", f"{o.seconds:.2f}")
    out.print(table)
    done = sum(o.recovered for o in outcomes)
    failed = sum(o.action.startswith("failed") for o in outcomes)
    out.print(f"{done} recovered, {failed} failed, {len(outcomes) - done - failed} left as they were")
    if failed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(capture_app, name="capture")

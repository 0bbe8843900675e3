"""`cantolab capture`: the recording engineer's commands.

devices, check, record (one take), session (a take loop), takes (a session at a glance), play,
recover, virtual-device. Exit codes: 0 a good take; 1 a take that stopped early (it is kept);
2 a user error (bad option, device, folder); 3 a take that clipped (kept, summary in red).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import typer

from flows.commands._errors import fail

DEFAULT_RECORDINGS = Path(os.environ.get("CANTOLAB_RECORDINGS", "RECORDINGS"))
EXIT_STOPPED = 1  # the take ended early (disk full, device gone); what was recorded is kept
EXIT_CLIPPED = 3  # the take is complete but clipped
DEVICE_HELP = (
    "Interface: index, or part of its name (e.g. its model). "
    "Default: $CANTOLAB_CAPTURE_DEVICE, `interface` in the settings file, else the one hardware input."
)
SETTINGS_HELP = "Session settings (TOML: interface, channel, microphone, sample_format, language). Default: $CANTOLAB_CAPTURE_SETTINGS, else RECORDINGS/capture.toml."

capture_app = typer.Typer(
    help="Record studio takes (48 kHz / 24-bit mono WAV + take manifest); a take is never lost.",
    no_args_is_help=True,
)
virtual_app = typer.Typer(
    help="A virtual input that plays a WAV/FLAC as if sung into an interface (try-outs, demos).", no_args_is_help=True
)
capture_app.add_typer(virtual_app, name="virtual-device")


def _settings(out, recordings: Path, settings_file: Path | None, **options):
    from capture.devices import CaptureError, check_device, resolve_device
    from capture.settings import load_settings
    from pipeline.errors import ConfigError

    try:
        settings = load_settings(recordings, options, settings_file)
        device = resolve_device(settings.interface)
        check_device(device, settings.channel)
    except (ConfigError, CaptureError) as exc:
        fail(str(exc))
    return settings, device


def _exit_code(result) -> int:
    if not result.ok:
        return EXIT_STOPPED
    return EXIT_CLIPPED if result.manifest.clipped_samples else 0


def _record_one(out, keys, req, title: str):
    """One take with the live meter (a clip light with peak hold, no scrolling warnings); the summary."""
    from rich.live import Live

    from capture.devices import CaptureError
    from capture.display import ClipLight, live_panel, summary_panel
    from capture.recorder import record_take

    live = Live(console=out, refresh_per_second=4, transient=True)
    light = ClipLight()

    def on_start(rec) -> None:
        out.print(f"recording [bold]{rec.manifest.take_id}[/] → {rec.wav_path}")
        live.start()

    def on_tick(stats) -> None:
        light.update(stats)
        live.update(live_panel(stats, title, req.seconds, light))

    try:
        result = record_take(req, on_start=on_start, on_tick=on_tick, keys=keys)
    except (CaptureError, ValueError) as exc:
        live.stop()
        fail(str(exc))
    live.stop()
    m = result.manifest
    if m.frames == 0 and result.ok:  # stopped before the first block arrived: there is nothing to keep
        result.wav_path.unlink(missing_ok=True)
        result.manifest_path.unlink(missing_ok=True)
        out.print(f"[yellow]take {m.take_id} ended before any audio arrived ({m.end_reason}): nothing saved[/]")
        return None
    out.print(summary_panel(result))
    return result


def _request(settings, device, session: str, singer: str, song: str, recordings: Path, **extra):
    from capture.recorder import TakeRequest

    return TakeRequest(
        session=session, singer=singer, song=song, recordings=recordings, device=device.index, channel=settings.channel,
        microphone=settings.microphone, language=settings.language, **extra,
    )  # fmt: skip


def _check_names(out, session: str, singer: str) -> str:
    from capture.manifest import safe_component

    try:
        safe_component(singer, "singer")
        return safe_component(session, "session")
    except ValueError as exc:
        fail(str(exc))


@capture_app.command("devices")
def devices(device: str | None = typer.Option(None, "--device", "-d", help=DEVICE_HELP)) -> None:
    """List input devices: host API, inputs, default rate, whether each can open 48 kHz / 24-bit, and which may resample."""
    from capture.devices import CaptureError, list_input_devices, resolve_device
    from capture.display import console, devices_table

    out = console()
    found = list_input_devices()
    chosen = None
    problem = ""
    try:
        chosen = resolve_device(device or os.environ.get("CANTOLAB_CAPTURE_DEVICE") or None, found) if found else None
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
    device: str | None = typer.Option(None, "--device", "-d", help=DEVICE_HELP),
    channel: int | None = typer.Option(
        None, "--channel", "-c", min=1, help="Input channel of the interface (1 = first; $CANTOLAB_CAPTURE_CHANNEL)."
    ),
    seconds: float | None = typer.Option(
        None, "--seconds", "-n", min=0.01, help="Stop after N seconds (default: Enter, space, q or Ctrl-C)."
    ),
    microphone: str | None = typer.Option(None, "--microphone", help="Microphone, for the manifest ($CANTOLAB_CAPTURE_MICROPHONE)."),
    sample_format: str | None = typer.Option(
        None, "--format", help="Sample format: PCM_24, the only one capture writes ($CANTOLAB_CAPTURE_FORMAT)."
    ),
    settings_file: Path | None = typer.Option(None, "--settings", help=SETTINGS_HELP),
    recordings: Path = typer.Option(DEFAULT_RECORDINGS, "--recordings", "-r", help="Recordings folder ($CANTOLAB_RECORDINGS)."),
    min_free_minutes: float = typer.Option(
        30.0, "--min-free-minutes", help="Refuse to start with less free disk than this many minutes of audio."
    ),
    flush_seconds: float = typer.Option(1.0, "--flush-seconds", min=0.05, max=1.0, help="Make the file durable at least this often."),
) -> None:
    """Record one take until N seconds or a stop key: RECORDINGS/<session>/<take_id>.wav + .json.

    Exit 0 a good take, 1 stopped early (kept), 2 a user error, 3 clipped (kept)."""
    from capture.display import console, settings_panel
    from capture.session import next_take_number
    from capture.terminal import Keys

    out = console()
    session = _check_names(out, session, singer)
    settings, dev = _settings(
        out, recordings, settings_file, interface=device, channel=channel, microphone=microphone, sample_format=sample_format
    )
    out.print(settings_panel(settings, dev, str(recordings / session)))
    req = _request(
        settings, dev, session, singer, song, recordings, notes=notes, seconds=seconds, min_free_minutes=min_free_minutes,
        flush_seconds=flush_seconds, take_number=next_take_number(recordings / session, song),
    )  # fmt: skip
    with Keys() as keys:
        result = _record_one(out, keys, req, f"{session} · {singer} · {song} · take {req.take_number}")
    if result is None:
        raise typer.Exit(EXIT_STOPPED)
    if result.device_hung:  # PortAudio's exit handler would hang on the dead device; all is on disk
        out.file.flush()
        os._exit(EXIT_STOPPED)
    code = _exit_code(result)
    if code:
        raise typer.Exit(code)


@capture_app.command("session")
def session_loop(
    session: str = typer.Option(..., "--session", "-s", help="Session name; takes go to RECORDINGS/<session>/."),
    singer: str = typer.Option(..., "--singer", help="Singer id (as used in the dataset)."),
    song: str = typer.Option(..., "--song", help="First song (changeable between takes with `s`)."),
    device: str | None = typer.Option(None, "--device", "-d", help=DEVICE_HELP),
    channel: int | None = typer.Option(None, "--channel", "-c", min=1, help="Input channel of the interface (1 = first)."),
    microphone: str | None = typer.Option(None, "--microphone", help="Microphone, for the manifests."),
    sample_format: str | None = typer.Option(None, "--format", help="Sample format (PCM_24)."),
    settings_file: Path | None = typer.Option(None, "--settings", help=SETTINGS_HELP),
    recordings: Path = typer.Option(DEFAULT_RECORDINGS, "--recordings", "-r", help="Recordings folder ($CANTOLAB_RECORDINGS)."),
    seconds: float | None = typer.Option(None, "--seconds", "-n", min=0.01, help="Each take stops after N seconds (default: a stop key)."),
    min_free_minutes: float = typer.Option(
        30.0, "--min-free-minutes", help="Refuse a take with less free disk than this many minutes of audio."
    ),
) -> None:
    """Stay armed for a whole session: one key per take, takes numbered per song, keep/discard + rating + note.

    Keys: space/Enter record · s change song · q quit. During a take: Enter, space or q stops it.
    After it: k keep / d discard, then 1–5 rating (Enter skips), then n for a note (Enter skips)."""
    from rich.markup import escape

    from capture.display import console, settings_panel
    from capture.session import next_take_number, set_verdict
    from capture.terminal import ENTER, Keys

    out = console()
    session = _check_names(out, session, singer)
    settings, dev = _settings(
        out, recordings, settings_file, interface=device, channel=channel, microphone=microphone, sample_format=sample_format
    )
    out.print(settings_panel(settings, dev, str(recordings / session)))
    takes = kept = 0
    with Keys() as keys, contextlib.suppress(KeyboardInterrupt):  # Ctrl-C between takes: end the session
        while True:
            number = next_take_number(recordings / session, song)
            out.print(
                f"[bold cyan]ready[/] {escape(singer)} · [bold]{escape(song)}[/] · take {number}   [dim]space/Enter record · s song · q quit[/]"
            )
            key = keys.key()
            if key is None or key in ("q", "\x1b"):
                break
            if key == "s":
                new = keys.line("song: ", out.file).strip()
                song = new or song
                continue
            if key not in (ENTER, " ", "r"):
                continue
            req = _request(
                settings, dev, session, singer, song, recordings, seconds=seconds, min_free_minutes=min_free_minutes, take_number=number
            )
            result = _record_one(out, keys, req, f"{session} · {singer} · {song} · take {number}")
            if result is None:
                continue
            takes += 1
            if result.device_hung:
                out.print("[bold red]the interface stopped; the take is on disk. Restart the session when it is back.[/]")
                out.file.flush()
                os._exit(EXIT_STOPPED)
            out.print("[bold]k[/] keep · [bold]d[/] discard   [dim](Enter: keep)[/]")
            verdict = None
            while verdict is None:
                key = keys.key()
                verdict = {"k": False, ENTER: False, "d": True, None: False}.get(key)
            out.print("rating [bold]1–5[/]   [dim](Enter: none)[/]")
            key = keys.key()
            rating = int(key) if key is not None and key in "12345" and len(key) == 1 else None
            out.print("[bold]n[/] add a note   [dim](Enter: none)[/]")
            comment = keys.line("note: ", out.file).strip() if keys.key() == "n" else ""
            m = set_verdict(result.wav_path, discarded=verdict, rating=rating, comment=comment)
            kept += not verdict
            stars = f" {'★' * rating}" if rating else ""
            style = "dim" if verdict else ("red" if m.clipped_samples or not result.ok else "green")
            out.print(
                f"[{style}]take {number} of {escape(song)}: {'discarded (kept on disk)' if verdict else 'kept'}{stars}{(' — ' + escape(comment)) if comment else ''}[/]"
            )
    out.print(f"session {escape(session)}: {takes} take(s) recorded, {kept} kept. `cantolab capture takes {escape(session)}` lists them.")


@capture_app.command("takes")
def takes(
    session: str = typer.Argument(..., help="Session name (a folder under RECORDINGS)."),
    recordings: Path = typer.Option(DEFAULT_RECORDINGS, "--recordings", "-r", help="Recordings folder ($CANTOLAB_RECORDINGS)."),
) -> None:
    """A session at a glance: number, take id, song, length, peak, clipped samples, status, kept/discarded, rating, note."""
    from capture.display import console, takes_table
    from capture.session import session_takes

    out = console()
    folder = recordings / session
    if not folder.is_dir():
        fail(f"no session {session!r} under {recordings}")
    rows = session_takes(folder)
    out.print(takes_table(session, rows))
    good = [m for _, m, _ in rows if m is not None]
    minutes = sum(m.seconds for m in good if not m.discarded) / 60
    out.print(
        f"{len(rows)} take(s): {sum(not m.discarded for m in good)} kept ({minutes:.1f} min), {sum(m.discarded for m in good)} discarded"
    )


@capture_app.command("play")
def play(
    take: str = typer.Argument(..., help="A take id (or its unique start), or a WAV path."),
    recordings: Path = typer.Option(DEFAULT_RECORDINGS, "--recordings", "-r", help="Recordings folder ($CANTOLAB_RECORDINGS)."),
    output: str | None = typer.Option(
        None, "--output", "-o", help="Output device (index or name part); default: the system default output."
    ),
) -> None:
    """Play a take back through the default output (Ctrl-C stops)."""
    import soundfile as sf

    from capture.display import console
    from capture.session import find_take
    from pipeline.errors import InputError

    out = console()
    try:
        wav = find_take(recordings, take)
    except InputError as exc:
        fail(str(exc))
    import sounddevice as sd

    audio, rate = sf.read(wav, dtype="int32", always_2d=True)
    out.print(f"playing {wav.stem} ({audio.shape[0] / rate:.2f} s) — Ctrl-C stops")
    try:
        sd.play(audio, rate, device=int(output) if output and output.isdigit() else output)
        sd.wait()
    except KeyboardInterrupt:
        sd.stop()
    except sd.PortAudioError as exc:
        fail(f"cannot play through {'the default output' if output is None else output}: {exc}")


@capture_app.command("check")
def check(
    device: str | None = typer.Option(None, "--device", "-d", help=DEVICE_HELP),
    channel: int | None = typer.Option(None, "--channel", "-c", min=1, help="Input channel of the interface (1 = first)."),
    seconds: float = typer.Option(5.0, "--seconds", "-n", min=0.5, help="Length of each step's recording."),
    settings_file: Path | None = typer.Option(None, "--settings", help=SETTINGS_HELP),
    recordings: Path = typer.Option(DEFAULT_RECORDINGS, "--recordings", "-r", help="Where the settings file is looked for."),
    no_wait: bool = typer.Option(False, "--no-wait", help="Go on to the singing step without waiting for a key."),
) -> None:
    """Two-step level check (nothing is saved): silence → noise floor; singing → peak and headroom."""
    from capture.devices import CaptureError
    from capture.display import console, level_report_panel
    from capture.levels import analyse_noise, analyse_singing
    from capture.recorder import SAMPLE_RATE, Listener
    from capture.terminal import ENTER, Keys

    out = console()
    settings, dev = _settings(out, recordings, settings_file, interface=device, channel=channel)
    try:
        with Listener(dev.index, settings.channel) as listener:
            with out.status(f"step 1 of 2 — silence: nobody sings or moves for {seconds:g} s…"):
                quiet, over1 = listener.record(seconds)
            if not no_wait:
                out.print("step 2 of 2 — press Enter, then sing the loudest passage of the session")
                with Keys() as keys:
                    while keys.key() not in (ENTER, None):  # other keys do not start the singing step
                        pass
            with out.status(f"step 2 of 2 — singing: the loudest passage, {seconds:g} s…"):
                loud, over2 = listener.record(seconds)
    except CaptureError as exc:
        fail(str(exc))
    noise = analyse_noise(quiet, SAMPLE_RATE, over1)
    singing = analyse_singing(loud, SAMPLE_RATE, over2)
    out.print(level_report_panel(noise, singing, dev, settings.channel))
    if not (noise.ok and singing.ok):
        raise typer.Exit(1)


@capture_app.command("recover")
def recover(recordings: Path = typer.Argument(DEFAULT_RECORDINGS, help="Recordings folder to scan (all sessions).")) -> None:
    """Repair takes of a killed recorder: fix the WAV header, keep every flushed frame, mark `recovered`."""
    from rich.markup import escape

    from capture.display import console
    from capture.recover import recover_all

    out = console()
    try:
        outcomes = recover_all(recordings)
    except FileNotFoundError as exc:
        fail(str(exc))
    # One take per line, the full id never cut: the engineer must tell takes apart.
    for o in outcomes:
        style = "green" if o.recovered else "red" if o.action.startswith("failed") else "dim"
        out.print(f"[{style}]{escape(o.action)}[/]  {o.wav_path.relative_to(recordings)}", soft_wrap=True)
        if o.recovered:
            out.print(
                f"    {o.seconds:.2f} s saved, {o.seconds_not_saved:.2f} s not saved (recorded but not on disk when the recorder died)",
                soft_wrap=True,
            )
    done = sum(o.recovered for o in outcomes)
    failed = sum(o.action.startswith("failed") for o in outcomes)
    out.print(f"{done} recovered, {failed} failed, {len(outcomes) - done - failed} left as they were")
    if failed:
        raise typer.Exit(1)


@virtual_app.command("start")
def virtual_start(
    audio: Path = typer.Argument(..., exists=True, dir_okay=False, help="A WAV or FLAC to play as the input (mono or its first channel)."),
    folder: Path = typer.Option(Path(".cantolab-virtual"), "--folder", help="Where the device's files go."),
    paced: bool = typer.Option(
        True, "--paced/--unpaced", help="Paced in real time by a JACK dummy server (as a real interface), or read as fast as asked."
    ),
) -> None:
    """Start a virtual input that 'sings' AUDIO, then print the variables to set: `eval $(cantolab capture virtual-device start song.wav)`."""
    import sys

    from capture.virtual_device import VirtualDeviceError, start_virtual_device

    try:
        state = start_virtual_device(audio, folder, paced=paced)
    except VirtualDeviceError as exc:
        fail(exc)
    for key, value in state.env.items():
        print(f"export {key}={value}")
    print(
        f"# virtual input {state.device!r} reading {audio} ({'paced' if paced else 'unpaced'}): capture commands in this shell now record from it",
        file=sys.stderr,
    )


@virtual_app.command("stop")
def virtual_stop(folder: Path = typer.Option(Path(".cantolab-virtual"), "--folder", help="The folder given to `start`.")) -> None:
    """Stop the virtual input started from FOLDER (its JACK server, if paced)."""
    import sys

    from capture.virtual_device import stop_virtual_device

    print(stop_virtual_device(folder), file=sys.stderr)  # stdout is for `eval`
    print("unset ALSA_CONFIG_PATH JACK_DEFAULT_SERVER JACK_NO_START_SERVER CANTOLAB_CAPTURE_DEVICE")


def register(app: typer.Typer) -> None:
    app.add_typer(capture_app, name="capture")

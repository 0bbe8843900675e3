"""What the recording engineer sees: a live meter while recording and a one-screen summary."""

from __future__ import annotations

import math
from dataclasses import dataclass

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from capture.devices import InputDevice
from capture.levels import NoiseReport, SingingReport
from capture.recorder import LiveStats, TakeResult
from capture.settings import CaptureSettings


def _db(value: float | None) -> str:
    return "-inf" if value is None or math.isinf(value) else f"{value:6.1f}"


def _clock(seconds: float) -> str:
    minutes, sec = divmod(max(0.0, seconds), 60)
    return f"{int(minutes):02d}:{sec:05.2f}"


def _bar(dbfs: float, width: int = 40) -> Text:
    """A -60..0 dBFS bar: green, yellow above -12, red above -3."""
    level = 0.0 if math.isinf(dbfs) else min(1.0, max(0.0, (dbfs + 60.0) / 60.0))
    filled = int(round(level * width))
    colour = "red" if dbfs > -3 else "yellow" if dbfs > -12 else "green"
    return Text("█" * filled, style=colour) + Text("·" * (width - filled), style="dim")


@dataclass
class ClipLight:
    """A clip light that stays lit `hold` seconds after the last clipped sample, and a peak hold:
    one steady line on the meter instead of a warning line per second."""

    hold: float = 2.0
    lit_until: float = -1.0
    hold_peak: float = float("-inf")
    hold_since: float = 0.0

    def update(self, stats: LiveStats) -> None:
        if stats.new_clips:
            self.lit_until = stats.elapsed + self.hold
        if stats.peak_dbfs >= self.hold_peak or stats.elapsed - self.hold_since > self.hold:
            self.hold_peak, self.hold_since = stats.peak_dbfs, stats.elapsed

    def lit(self, elapsed: float) -> bool:
        return elapsed <= self.lit_until


def live_panel(stats: LiveStats, title: str, seconds: float | None, light: ClipLight | None = None) -> Panel:
    light = light or ClipLight()
    grid = Table.grid(padding=(0, 2))
    grid.add_column(justify="right", style="bold")
    grid.add_column(overflow="fold")
    limit = f" / {_clock(seconds)}" if seconds else "   (Enter, space or q to stop)"
    grid.add_row("elapsed", f"{_clock(stats.elapsed)}{limit}")
    grid.add_row("peak", Text(f"{_db(stats.peak_dbfs)} dBFS  ") + _bar(stats.peak_dbfs))
    grid.add_row("RMS", Text(f"{_db(stats.rms_dbfs)} dBFS  ") + _bar(stats.rms_dbfs))
    grid.add_row("peak hold", f"{_db(light.hold_peak)} dBFS   (take peak {_db(stats.take_peak_dbfs)} dBFS)")
    if light.lit(stats.elapsed):
        clip = Text(" CLIP ", style="bold white on red")
    else:
        clip = Text(" clip ", style="dim")
    count = f"  {stats.clipped_samples:,} clipped samples this take" if stats.clipped_samples else "  none"
    grid.add_row("clip", clip + Text(count, style="red" if stats.clipped_samples else "green"))
    overflows = f"{stats.input_overflows}" + (f"   frames lost {stats.frames_lost}" if stats.frames_lost else "")
    grid.add_row("overflows", Text(overflows, style="bold red" if stats.input_overflows or stats.frames_lost else "green"))
    return Panel(grid, title=f"[bold red]● REC[/] {title}", border_style="red")


def summary_panel(result: TakeResult) -> Panel:
    m = result.manifest
    grid = Table.grid(padding=(0, 2))
    grid.add_column(justify="right", style="bold")
    grid.add_column(overflow="fold")
    good = result.ok and not m.clipped_samples
    status = f"{m.status} ({m.end_reason})" + (f" — CLIPPED: {m.clipped_samples:,} samples" if m.clipped_samples else "")
    grid.add_row("status", Text(status, style="green" if good else "bold red"))
    grid.add_row("take", m.take_id)
    number = f" · take {m.take_number}" if m.take_number else ""
    grid.add_row("singer / song", f"{m.singer} / {m.song}{number}")
    grid.add_row("length", f"{_clock(m.seconds)} ({m.frames} frames, {m.sample_rate} Hz, {m.subtype}, mono ch {m.input_channel})")
    grid.add_row("peak", f"{_db(m.peak_dbfs)} dBFS")
    grid.add_row("clipped samples", Text(str(m.clipped_samples), style="bold red" if m.clipped_samples else "green"))
    grid.add_row("input overflows", Text(str(m.input_overflows), style="bold red" if m.input_overflows else "green"))
    grid.add_row("device", f"{m.device_name} ({m.host_api}) · {m.microphone or 'microphone not set'}")
    grid.add_row("audio", str(result.wav_path))
    grid.add_row("manifest", str(result.manifest_path))
    grid.add_row("sha256", m.sha256 or "")
    parts = [grid]
    if m.error:
        parts.append(Text(f"\nThe take stopped early: {m.error}. Everything recorded up to then is in the file.", style="bold red"))
    for warning in result.warnings:
        parts.append(Text(f"⚠ {warning}", style="yellow"))
    return Panel(Group(*parts), title="take summary", border_style="green" if good else "red")


def devices_table(devices: list[InputDevice], chosen: InputDevice | None) -> Table:
    table = Table(title="Input devices")
    for col in ("", "index", "name", "host API", "inputs", "default rate", "48 kHz / 24-bit"):
        table.add_column(col, overflow="fold", no_wrap=col not in ("host API", "48 kHz / 24-bit"))  # names are never cut
    for d in devices:
        mark = "→" if chosen is not None and d.index == chosen.index else ""
        table.add_row(
            mark,
            str(d.index),
            d.name + (" (default)" if d.is_default else ""),
            d.host_api,
            str(d.input_channels),
            f"{d.default_rate:g} Hz",
            _format_cell(d),
        )
    return table


def _format_cell(d: InputDevice) -> Text:
    if not d.can_48k_24bit:
        return Text("no", style="red")
    if d.may_resample:
        return Text("yes (ALSA plugin: may resample)", style="yellow")
    return Text("yes", style="green")


def settings_panel(settings: CaptureSettings, device: InputDevice, where: str) -> Panel:
    """What every take of this session will be recorded with, and where each value came from."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(justify="right", style="bold")
    grid.add_column(overflow="fold")
    grid.add_column(style="dim")
    grid.add_row("interface", device.label(), settings.source("interface"))
    grid.add_row("input channel", f"{settings.channel} of {device.input_channels}", settings.source("channel"))
    mic = Text(settings.microphone) if settings.microphone else Text("not set", style="bold yellow")
    grid.add_row("microphone", mic, settings.source("microphone"))
    grid.add_row("format", f"48 kHz / 24-bit PCM mono ({settings.sample_format})", settings.source("sample_format"))
    grid.add_row("takes go to", where, "")
    if settings.file is not None:
        grid.add_row("settings file", str(settings.file), "")
    notes = []
    if not settings.microphone:
        notes.append(
            "⚠ no microphone set: manifests will say so. Set --microphone, $CANTOLAB_CAPTURE_MICROPHONE or `microphone` in capture.toml"
        )
    if device.may_resample:
        notes.append(
            f"⚠ {device.name} is an ALSA plugin device, not the interface's hw: device: ALSA may resample without "
            "telling PortAudio. For studio takes choose the hw: device (`cantolab capture devices`)."
        )
    if device.is_alias:
        notes.append(f"⚠ {device.name!r} does not name the interface; the manifests will say {device.name!r}")
    parts = [grid] + [Text(n, style="yellow") for n in notes]
    return Panel(Group(*parts), title="session settings", border_style="cyan")


def takes_table(session: str, rows: list) -> Table:
    """`capture takes`: one line per take, as its manifest says."""
    table = Table(title=f"Takes of session {session}")
    for col, justify in (("#", "right"), ("take", "left"), ("song", "left"), ("length", "right"), ("peak", "right"),
                         ("clipped", "right"), ("status", "left"), ("kept", "left"), ("rating", "right"), ("note", "left")):  # fmt: skip
        table.add_column(col, justify=justify, overflow="fold", no_wrap=col not in ("song", "note"))  # ids are never cut
    for wav, m, problem in rows:
        if m is None:
            table.add_row("", wav.stem, "", "", "", "", Text(problem, style="red"), "", "", "")
            continue
        table.add_row(
            str(m.take_number or ""),
            m.take_id,
            m.song,
            _clock(m.seconds),
            _db(m.peak_dbfs).strip(),
            Text(f"{m.clipped_samples:,}", style="bold red" if m.clipped_samples else ""),
            Text(str(m.status), style="green" if str(m.status) in ("complete", "recovered") else "red"),
            Text("discarded", style="dim") if m.discarded else Text("kept", style="green"),
            "★" * m.rating if m.rating else "",
            m.comment,
        )
    return table


def level_report_panel(noise: NoiseReport, singing: SingingReport, device: InputDevice, channel: int) -> Panel:
    """Both steps of `capture check`, each figure with its verdict against the studio thresholds."""
    marks = {"good": ("✓", "green"), "warn": ("!", "yellow"), "bad": ("✗", "bold red")}
    grid = Table.grid(padding=(0, 2))
    grid.add_column(justify="right", style="bold")
    grid.add_column(overflow="fold")
    grid.add_row("device", f"{device.label()} channel {channel}")
    grid.add_row(
        "1 silence",
        f"{noise.seconds:.1f} s: noise floor {_db(noise.noise_floor_dbfs).strip()} dBFS RMS, peak {_db(noise.peak_dbfs).strip()} dBFS",
    )
    grid.add_row(
        "2 singing",
        f"{singing.seconds:.1f} s: peak {_db(singing.peak_dbfs).strip()} dBFS, RMS {_db(singing.rms_dbfs).strip()} dBFS, clipped samples {singing.clipped_samples}",
    )
    if not math.isinf(singing.rms_dbfs) and not math.isinf(noise.noise_floor_dbfs):
        grid.add_row("", f"singing is {singing.rms_dbfs - noise.noise_floor_dbfs:.1f} dB above the noise floor")
    lines = []
    for verdict in noise.verdicts() + singing.verdicts():
        mark, style = marks[verdict.level]
        lines.append(Text(f"{mark} {verdict.text}", style=style))
    ok = noise.ok and singing.ok
    return Panel(
        Group(grid, Text(""), *lines),
        title="level check: " + ("ready to record" if ok else "fix before recording"),
        border_style="green" if ok else "red",
    )


def console() -> Console:
    return Console(highlight=False)

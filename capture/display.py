"""What the recording engineer sees: a live meter while recording and a one-screen summary."""

from __future__ import annotations

import math

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from capture.devices import InputDevice
from capture.levels import LevelReport
from capture.recorder import LiveStats, TakeResult


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


def live_panel(stats: LiveStats, title: str, seconds: float | None) -> Panel:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(justify="right", style="bold")
    grid.add_column()
    limit = f" / {_clock(seconds)}" if seconds else "   (Enter or Ctrl-C to stop)"
    grid.add_row("elapsed", f"{_clock(stats.elapsed)}{limit}")
    grid.add_row("peak", Text(f"{_db(stats.peak_dbfs)} dBFS  ") + _bar(stats.peak_dbfs))
    grid.add_row("RMS", Text(f"{_db(stats.rms_dbfs)} dBFS  ") + _bar(stats.rms_dbfs))
    grid.add_row("take peak", f"{_db(stats.take_peak_dbfs)} dBFS")
    grid.add_row("clipping", Text(str(stats.clipped_samples), style="bold red" if stats.clipped_samples else "green"))
    grid.add_row("overflows", Text(str(stats.input_overflows), style="bold red" if stats.input_overflows else "green"))
    if stats.frames_lost:
        grid.add_row("frames lost", Text(str(stats.frames_lost), style="bold red"))
    return Panel(grid, title=f"[bold red]● REC[/] {title}", border_style="red")


def summary_panel(result: TakeResult) -> Panel:
    m = result.manifest
    grid = Table.grid(padding=(0, 2))
    grid.add_column(justify="right", style="bold")
    grid.add_column()
    status_style = "green" if result.ok else "bold red"
    grid.add_row("status", Text(f"{m.status} ({m.end_reason})", style=status_style))
    grid.add_row("take", m.take_id)
    grid.add_row("singer / song", f"{m.singer} / {m.song}")
    grid.add_row("length", f"{_clock(m.seconds)} ({m.frames} frames, {m.sample_rate} Hz, {m.subtype}, mono ch {m.input_channel})")
    grid.add_row("peak", f"{_db(m.peak_dbfs)} dBFS")
    grid.add_row("clipped samples", Text(str(m.clipped_samples), style="bold red" if m.clipped_samples else "green"))
    grid.add_row("input overflows", Text(str(m.input_overflows), style="bold red" if m.input_overflows else "green"))
    grid.add_row("device", f"{m.device_name} ({m.host_api}) · {m.microphone}")
    grid.add_row("audio", str(result.wav_path))
    grid.add_row("manifest", str(result.manifest_path))
    grid.add_row("sha256", m.sha256 or "")
    parts = [grid]
    if m.error:
        parts.append(Text(f"\nThe take stopped early: {m.error}. Everything recorded up to then is in the file.", style="bold red"))
    for warning in result.warnings:
        parts.append(Text(f"⚠ {warning}", style="yellow"))
    return Panel(Group(*parts), title="take summary", border_style="green" if result.ok else "red")


def devices_table(devices: list[InputDevice], chosen: InputDevice | None) -> Table:
    table = Table(title="Input devices")
    for col in ("", "index", "name", "host API", "inputs", "default rate", "48 kHz / 24-bit"):
        table.add_column(col, overflow="fold")
    for d in devices:
        mark = "→" if chosen is not None and d.index == chosen.index else ""
        table.add_row(
            mark,
            str(d.index),
            d.name + (" (default)" if d.is_default else ""),
            d.host_api,
            str(d.input_channels),
            f"{d.default_rate:g} Hz",
            Text("yes", style="green") if d.can_48k_24bit else Text("no", style="red"),
        )
    return table


def level_report_panel(report: LevelReport, device: InputDevice, channel: int) -> Panel:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(justify="right", style="bold")
    grid.add_column()
    grid.add_row("device", f"{device.label()} channel {channel}")
    grid.add_row("length", f"{report.seconds:.1f} s")
    grid.add_row("peak", f"{_db(report.peak_dbfs)} dBFS")
    grid.add_row("RMS", f"{_db(report.rms_dbfs)} dBFS")
    grid.add_row("noise floor", f"{_db(report.noise_floor_dbfs)} dBFS (quietest 10 % of 50 ms windows)")
    grid.add_row("DC offset", f"{report.dc_offset:+.6f} of full scale")
    grid.add_row("clipped samples", str(report.clipped_samples))
    grid.add_row("input overflows", str(report.input_overflows))
    advice = Text("\n".join(f"• {a}" for a in report.advice()))
    return Panel(Group(grid, Text(""), advice), title="level check")


def console() -> Console:
    return Console(highlight=False)

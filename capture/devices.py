"""Input devices as PortAudio sees them, and choosing the one to record from.

A device is named by index or by a case-insensitive substring of its name (e.g. the interface's
model). `sounddevice` is imported lazily: PortAudio reads ALSA_CONFIG_PATH when it initializes.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.errors import ConfigError

SAMPLE_RATE = 48_000
ALIASES = ("default", "sysdefault", "pulse", "pipewire", "dsnoop", "dmix")


class CaptureError(ConfigError):
    """A problem the recording engineer can act on; the message says what and what to do."""


@dataclass
class InputDevice:
    index: int
    name: str
    host_api: str
    input_channels: int
    default_rate: float
    can_48k_24bit: bool
    is_default: bool = False

    def label(self) -> str:
        return f"[{self.index}] {self.name} ({self.host_api})"

    @property
    def may_resample(self) -> bool:
        """An ALSA device that is not a hardware `hw:` one goes through ALSA plugins (`default`,
        `plug`, dmix, PulseAudio/PipeWire) that can convert the rate without telling PortAudio."""
        return self.host_api == "ALSA" and "(hw:" not in self.name

    @property
    def is_alias(self) -> bool:
        """The system's default input under a generic name: it does not say which interface records."""
        return self.name.strip().lower() in ALIASES


def _sd():
    import sounddevice

    return sounddevice


def supports(index: int, channels: int = 1, rate: int = SAMPLE_RATE) -> str | None:
    """None when PortAudio can open the device at `rate` with 24-bit samples, else its reason."""
    sd = _sd()
    try:
        sd.check_input_settings(device=index, channels=channels, dtype="int24", samplerate=rate)
        sd.check_input_settings(device=index, channels=channels, dtype="int32", samplerate=rate)
    except Exception as exc:  # PortAudioError or ValueError, with PortAudio's words
        return str(exc)
    return None


def list_input_devices() -> list[InputDevice]:
    sd = _sd()
    apis = sd.query_hostapis()
    try:
        default_in = sd.default.device[0]
    except Exception:
        default_in = -1
    devices = []
    for info in sd.query_devices():
        if info["max_input_channels"] < 1:
            continue
        devices.append(
            InputDevice(
                index=info["index"],
                name=info["name"],
                host_api=apis[info["hostapi"]]["name"],
                input_channels=info["max_input_channels"],
                default_rate=float(info["default_samplerate"]),
                can_48k_24bit=supports(info["index"]) is None,
                is_default=info["index"] == default_in,
            )
        )
    return devices


def _listing(devices: list[InputDevice]) -> str:
    if not devices:
        return "  (PortAudio finds no input device: is the interface connected and switched on?)"
    return "\n".join(f"  {d.label()}, {d.input_channels} in, default {d.default_rate:g} Hz" for d in devices)


def resolve_device(spec: str | int | None, devices: list[InputDevice] | None = None) -> InputDevice:
    """The device `spec` names: None → the system default input; digits → index; else a substring."""
    devices = list_input_devices() if devices is None else devices
    if spec is None or str(spec).strip() == "":
        default = next((d for d in devices if d.is_default), devices[0] if devices else None)
        if default is None:
            raise CaptureError("no input device found.\n" + _listing(devices))
        if not default.is_alias:
            return default
        # "default" would be written into every manifest and may resample: use the one hardware
        # interface when there is exactly one, else ask for its name.
        hardware = [d for d in devices if "(hw:" in d.name]
        if len(hardware) == 1:
            return hardware[0]
        raise CaptureError(
            f"no interface named, and the system default input ({default.name!r}) does not say which interface "
            'records (and may resample). Name it once: --device, $CANTOLAB_CAPTURE_DEVICE, or `interface = "…"` '
            "in RECORDINGS/capture.toml (`--device default` to use it anyway). Input devices:\n" + _listing(devices)
        )
    text = str(spec).strip()
    if text.isdigit():
        for d in devices:
            if d.index == int(text):
                return d
        raise CaptureError(f"no input device with index {text}. Input devices:\n" + _listing(devices))
    exact = [d for d in devices if d.name.lower() == text.lower()]
    matches = exact or [d for d in devices if text.lower() in d.name.lower()]
    if not matches:
        raise CaptureError(f"no input device matches {text!r}. Input devices:\n" + _listing(devices))
    # Several matches (the same interface through two host APIs): prefer one that can do 48 kHz.
    usable = [d for d in matches if d.can_48k_24bit]
    return (usable or matches)[0]


def check_device(device: InputDevice, channel: int) -> None:
    """Refuse a device that cannot give us `channel` at 48 kHz / 24-bit; capture never resamples."""
    if channel < 1:
        raise CaptureError(f"--channel counts from 1; got {channel}")
    if channel > device.input_channels:
        raise CaptureError(f"{device.label()} has {device.input_channels} input channel(s); channel {channel} does not exist")
    reason = supports(device.index, channels=channel)
    if reason is not None:
        raise CaptureError(
            f"{device.label()} cannot record at {SAMPLE_RATE} Hz / 24-bit (its default rate is "
            f"{device.default_rate:g} Hz; PortAudio says: {reason}). Capture never resamples: set the "
            "interface to 48 kHz in its control panel, or choose another device (`cantolab capture devices`)."
        )

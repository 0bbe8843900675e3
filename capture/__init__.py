"""Capture: record studio takes (48 kHz / 24-bit mono WAV + take manifest) so that none is lost.

Built on `sounddevice` (PortAudio). Imports `pipeline` only; the `cantolab capture` commands live
in flows/commands/capture.py.
"""

__version__ = "0.1.0"

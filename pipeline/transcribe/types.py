"""The transcription interface shared by both backends: options in, segments and words out."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from pipeline.errors import ConfigError

WHISPER_RATE = 16_000  # Whisper's input sample rate (Hz)
# Whisper encoder frames per second (30-s window → 1500 frames).
ENCODER_FPS = 50
ENCODER_KEY_PREFIX = "whisper-encoder:"


def encoder_feature_key(model: str, below_top: int = 0) -> str:
    """The `features` table's encoder_model for a Whisper model's encoder states (`below_top` k: the
    states entering its top k blocks). Ingest writes these keys and training reads them."""
    return f"{ENCODER_KEY_PREFIX}{model}" + (f":below-top{below_top}" if below_top else "")


@dataclass(frozen=True)
class TranscribeOptions:
    """Decoding options; the defaults are chosen for sung lyrics, not speech."""

    language: str | None = None  # None: detect per take
    beam_size: int = 5
    word_timestamps: bool = True
    vad_filter: bool = False  # faster-whisper only (Silero VAD)
    # Off: on singing, conditioning on the previous window feeds repetition loops.
    condition_on_previous_text: bool = False
    temperature: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)  # fallback ladder
    compression_ratio_threshold: float = 2.4
    log_prob_threshold: float = -1.0
    no_speech_threshold: float = 0.6
    keep_encoder_frames: bool = True

    def __post_init__(self) -> None:
        if self.beam_size < 1:
            raise ConfigError("beam_size must be >= 1")
        if not self.temperature or any(t < 0 for t in self.temperature):
            raise ConfigError("temperature must be a non-empty sequence of values >= 0")

    def fingerprint(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


@dataclass
class Word:
    word: str
    start: float
    end: float
    probability: float


@dataclass
class Segment:
    start: float
    end: float
    text: str
    words: list[Word] = field(default_factory=list)
    avg_logprob: float = 0.0
    no_speech_prob: float = 0.0
    compression_ratio: float = 0.0
    temperature: float | None = None
    suspected_hallucination: bool = False
    hallucination_reasons: list[str] = field(default_factory=list)

    @property
    def is_lyrics(self) -> bool:
        """False for segments Whisper itself would call silence or that hold no words (♪, "...")."""
        return not ({"no_speech", "non_lexical", "no_voice"} & set(self.hallucination_reasons))


@dataclass
class Transcription:
    segments: list[Segment]
    language: str | None
    language_probability: float | None
    duration: float
    backend: str
    model: str  # model name or path, as resolved
    # Encoder output over the whole take (float16, ENCODER_FPS frames/s × d), when kept.
    encoder_frames: np.ndarray | None = None
    voiced_seconds: float | None = None  # set by the voice gate (hallucination.review)

    @property
    def text(self) -> str:
        """The transcript: every segment except those judged not to be lyrics (no speech, non-lexical)."""
        return " ".join(s.text.strip() for s in self.segments if s.is_lyrics and s.text.strip()).strip()

    @property
    def suspected_hallucinations(self) -> int:
        return sum(s.suspected_hallucination for s in self.segments)


def segment_from(s: Mapping) -> Segment:
    """A backend's segment (a mapping with Whisper's field names; words as mappings) as our Segment."""
    return Segment(
        start=float(s["start"]),
        end=float(s["end"]),
        text=s["text"].strip(),
        words=[Word(w["word"].strip(), float(w["start"]), float(w["end"]), float(w["probability"])) for w in (s.get("words") or [])],
        avg_logprob=float(s["avg_logprob"]),
        no_speech_prob=float(s["no_speech_prob"]),
        compression_ratio=float(s["compression_ratio"]),
        temperature=None if s.get("temperature") is None else float(s["temperature"]),
    )


class Transcriber(Protocol):
    """What both backends offer (faster-whisper and openai-whisper on the same weights)."""

    backend: str
    model_name: str

    def transcribe(self, audio16k: np.ndarray, options: TranscribeOptions = ...) -> Transcription: ...


class EncoderFrameCollector:
    """Keeps the encoder output of each 30-s window the decoder already ran, on the take's timeline.

    Backends call `window(mel_window, output)` from inside their encode step; the window's position
    is found by matching its first mel columns against the take's full mel (exact: same arrays).
    A backend that learns the full mel only after its first encode (faster-whisper's language
    detection) creates the collector without it and calls `set_mel` later; earlier windows wait.
    """

    def __init__(self, full_mel: np.ndarray | None = None):
        self.full_mel: np.ndarray | None = None
        self.content_frames = 0
        self.pieces: dict[int, np.ndarray] = {}
        self.pending: list[tuple[np.ndarray, np.ndarray]] = []
        if full_mel is not None:
            self.set_mel(full_mel)

    def set_mel(self, full_mel: np.ndarray) -> None:
        self.full_mel = np.asarray(full_mel, dtype=np.float32)
        self.content_frames = self.full_mel.shape[-1]
        pending, self.pending = self.pending, []
        for mel_window, output in pending:
            self.window(mel_window, output)

    def _seek_of(self, window: np.ndarray) -> int | None:
        first = window[:, 0]
        candidates = np.flatnonzero(np.all(self.full_mel == first[:, None], axis=0))
        for seek in candidates:
            n = min(window.shape[-1], self.content_frames - seek, 64)
            if np.array_equal(self.full_mel[:, seek : seek + n], window[:, :n]):
                return int(seek)
        return None

    def window(self, mel_window: np.ndarray, output: np.ndarray) -> None:
        if self.full_mel is None:
            self.pending.append((np.array(mel_window), np.array(output)))
            return
        mel_window = np.asarray(mel_window, dtype=np.float32).reshape(-1, *np.shape(mel_window)[-2:])
        output = np.asarray(output).reshape(-1, *np.shape(output)[-2:])
        for mel, out in zip(mel_window, output):
            seek = self._seek_of(mel)
            if seek is not None:
                self.pieces[seek] = out.astype(np.float16)

    def frames(self) -> np.ndarray | None:
        """Frames over the content (mel 100/s → encoder 50/s); later windows win; NaN rows were never encoded."""
        if not self.pieces:
            return None
        dim = next(iter(self.pieces.values())).shape[-1]
        total = (self.content_frames + 1) // 2
        out = np.full((total, dim), np.nan, dtype=np.float16)  # NaN: no window covered this frame
        for seek in sorted(self.pieces):
            start = seek // 2
            piece = self.pieces[seek][: max(0, total - start)]
            out[start : start + len(piece)] = piece
        return out

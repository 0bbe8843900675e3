"""faster-whisper (CTranslate2) backend: the fast engine, int8 on CPU by default."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

from pipeline.transcribe.types import EncoderFrameCollector, Segment, TranscribeOptions, Transcription, Word


def _whisper_model_class():
    from faster_whisper import WhisperModel

    class CollectingWhisperModel(WhisperModel):
        """Hands each window's encoder output to a collector; decoding is unchanged.

        The collector is per thread: one loaded model serves concurrent transcriptions.
        """

        _local = threading.local()

        @property
        def collector(self) -> EncoderFrameCollector | None:
            return getattr(self._local, "collector", None)

        @collector.setter
        def collector(self, value: EncoderFrameCollector | None) -> None:
            self._local.collector = value

        def generate_segments(self, features, *args, **kwargs):
            if self.collector is not None and self.collector.full_mel is None:
                self.collector.full_mel = np.asarray(features[..., :-1], dtype=np.float32)
                self.collector.content_frames = self.collector.full_mel.shape[-1]
                # Language detection encodes the first window before decoding starts (and reuses it).
                for window, output in self.collector.pending:
                    self.collector.window(window, output)
            yield from super().generate_segments(features, *args, **kwargs)

        def encode(self, features):
            output = super().encode(features)
            if self.collector is not None:
                if self.collector.full_mel is None:
                    self.collector.pending.append((np.array(features), np.array(output)))
                else:
                    self.collector.window(features, np.array(output))
            return output

    return CollectingWhisperModel


class FasterWhisperTranscriber:
    backend = "faster-whisper"

    def __init__(self, model_dir: str | Path, model_name: str, compute_type: str = "int8", threads: int = 0):
        self.model_name = model_name
        self.model_dir = str(model_dir)
        self.compute_type = compute_type
        self.model = _whisper_model_class()(
            self.model_dir, device="cpu", compute_type=compute_type, cpu_threads=threads or (os.cpu_count() or 1), local_files_only=True
        )

    def transcribe(self, audio16k: np.ndarray, options: TranscribeOptions = TranscribeOptions()) -> Transcription:
        audio16k = np.ascontiguousarray(audio16k, dtype=np.float32)
        collector = None
        if options.keep_encoder_frames and not options.vad_filter:
            # With VAD the windows cover concatenated speech, not the take's timeline: nothing to keep.
            collector = EncoderFrameCollector.__new__(EncoderFrameCollector)
            collector.full_mel, collector.pieces, collector.pending = None, {}, []
        self.model.collector = collector
        try:
            raw, info = self.model.transcribe(
                audio16k,
                language=options.language,
                beam_size=options.beam_size,
                word_timestamps=options.word_timestamps,
                vad_filter=options.vad_filter,
                condition_on_previous_text=options.condition_on_previous_text,
                temperature=list(options.temperature),
                compression_ratio_threshold=options.compression_ratio_threshold,
                log_prob_threshold=options.log_prob_threshold,
                no_speech_threshold=options.no_speech_threshold,
            )
            segments = [
                Segment(
                    start=float(s.start),
                    end=float(s.end),
                    text=s.text.strip(),
                    words=[Word(w.word.strip(), float(w.start), float(w.end), float(w.probability)) for w in (s.words or [])],
                    avg_logprob=float(s.avg_logprob),
                    no_speech_prob=float(s.no_speech_prob),
                    compression_ratio=float(s.compression_ratio),
                    temperature=s.temperature,
                )
                for s in raw  # a generator: decoding happens here
            ]
        finally:
            self.model.collector = None
        return Transcription(
            segments=segments,
            language=info.language,
            language_probability=float(info.language_probability) if info.language_probability is not None else None,
            duration=len(audio16k) / 16_000,
            backend=self.backend,
            model=self.model_name,
            encoder_frames=collector.frames() if collector is not None else None,
        )

"""faster-whisper (CTranslate2) backend: the fast engine, int8 on CPU by default."""

from __future__ import annotations

import os
import threading
from dataclasses import asdict
from pathlib import Path

import numpy as np

from pipeline.transcribe.types import WHISPER_RATE, EncoderFrameCollector, TranscribeOptions, Transcription, segment_from


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
                # Language detection encodes the first window before decoding starts: it waits in `pending`.
                self.collector.set_mel(features[..., :-1])
            yield from super().generate_segments(features, *args, **kwargs)

        def encode(self, features):
            output = super().encode(features)
            if self.collector is not None:
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
            collector = EncoderFrameCollector()  # the full mel arrives in generate_segments
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
            segments = [segment_from(asdict(s)) for s in raw]  # a generator: decoding happens here
        finally:
            self.model.collector = None
        return Transcription(
            segments=segments,
            language=info.language,
            language_probability=float(info.language_probability) if info.language_probability is not None else None,
            duration=len(audio16k) / WHISPER_RATE,
            backend=self.backend,
            model=self.model_name,
            encoder_frames=collector.frames() if collector is not None else None,
        )

"""openai-whisper backend (PyTorch, float32 on CPU): the implementation the paper names, on the same weights as faster-whisper."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.transcribe.types import WHISPER_RATE, EncoderFrameCollector, TranscribeOptions, Transcription, segment_from


def load_openai_checkpoint(path: str | Path):
    """Load a checkpoint written by pipeline.transcribe.convert (or openai-whisper's own .pt)."""
    import torch
    from whisper.model import ModelDimensions, Whisper

    checkpoint = torch.load(str(path), map_location="cpu", weights_only=False)
    model = Whisper(ModelDimensions(**checkpoint["dims"]))
    model.load_state_dict(checkpoint["model_state_dict"])
    heads = checkpoint.get("alignment_heads")
    if heads:
        mask = torch.zeros(model.dims.n_text_layer, model.dims.n_text_head, dtype=torch.bool)
        for layer, head in heads:
            mask[layer, head] = True
        model.register_buffer("alignment_heads", mask.to_sparse(), persistent=False)
    return model.eval()


class OpenAIWhisperTranscriber:
    backend = "openai-whisper"

    def __init__(self, checkpoint: str | Path, model_name: str, threads: int = 0):
        import torch

        if threads:
            torch.set_num_threads(threads)
        self.model_name = model_name
        self.checkpoint = str(checkpoint)
        self.model = load_openai_checkpoint(checkpoint)

    def transcribe(self, audio16k: np.ndarray, options: TranscribeOptions = TranscribeOptions()) -> Transcription:
        import torch
        import whisper
        from whisper.audio import N_SAMPLES, log_mel_spectrogram

        from pipeline.transcribe import check_options

        check_options(self.backend, options)
        audio16k = np.ascontiguousarray(audio16k, dtype=np.float32)
        collector = hook = None
        if options.keep_encoder_frames:
            mel = log_mel_spectrogram(torch.from_numpy(audio16k), self.model.dims.n_mels, padding=N_SAMPLES)
            collector = EncoderFrameCollector(mel[:, : mel.shape[-1] - 3000].numpy())
            hook = self.model.encoder.register_forward_hook(
                lambda _m, inputs, output: collector.window(inputs[0].detach().numpy(), output.detach().numpy())
            )
        decode = {"beam_size": options.beam_size} if options.beam_size > 1 else {}
        # openai-whisper uses best_of for sampled temperatures; faster-whisper's default is 5 too.
        decode["best_of"] = 5
        try:
            with torch.inference_mode():
                result = whisper.transcribe(
                    self.model,
                    audio16k,
                    verbose=None,
                    language=options.language,
                    temperature=tuple(options.temperature),
                    compression_ratio_threshold=options.compression_ratio_threshold,
                    logprob_threshold=options.log_prob_threshold,
                    no_speech_threshold=options.no_speech_threshold,
                    condition_on_previous_text=options.condition_on_previous_text,
                    word_timestamps=options.word_timestamps,
                    fp16=False,
                    **decode,
                )
        finally:
            if hook is not None:
                hook.remove()
        segments = [segment_from(s) for s in result["segments"]]
        return Transcription(
            segments=segments,
            language=result.get("language"),
            language_probability=None,
            duration=len(audio16k) / WHISPER_RATE,
            backend=self.backend,
            model=self.model_name,
            encoder_frames=collector.frames() if collector is not None else None,
        )

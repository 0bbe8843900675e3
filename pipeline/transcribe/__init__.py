"""Whisper transcription of sung lyrics: one interface, two backends on the same real weights.

    t = load_transcriber("base")                      # faster-whisper when its model is available
    result = t.transcribe(audio16k, TranscribeOptions(language="en"))
    review(result, audio16k)                          # suspected hallucinations, kept and counted

Models by name (`large-v3` is the production default; `base` and `tiny.en` are bundled offline,
see pipeline.models_cache) or by path (a CTranslate2 folder, or an openai-whisper .pt checkpoint).
"""

from __future__ import annotations

import threading
from pathlib import Path

from pipeline.errors import ConfigError
from pipeline.models_cache import (
    BUNDLED,
    PRODUCTION_DEFAULT,
    ModelNotFoundError,
    assemble_ct2,
    assemble_openai,
    ct2_dir,
    how_to_provide,
    openai_checkpoint,
)
from pipeline.transcribe.hallucination import HallucinationRules, flag_segments, review
from pipeline.transcribe.types import (
    ENCODER_FPS,
    WHISPER_RATE,
    Segment,
    TranscribeOptions,
    Transcriber,
    Transcription,
    Word,
    encoder_feature_key,
)

BACKENDS = ("faster-whisper", "openai-whisper")

__all__ = [
    "BACKENDS",
    "ENCODER_FPS",
    "HallucinationRules",
    "ModelNotFoundError",
    "PRODUCTION_DEFAULT",
    "Segment",
    "TranscribeOptions",
    "Transcriber",
    "Transcription",
    "WHISPER_RATE",
    "Word",
    "encoder_feature_key",
    "flag_segments",
    "review",
    "check_options",
    "load_transcriber",
    "resolve_backend",
    "resolve_model",
]


def _hf_cache_ct2(name: str) -> Path | None:
    """faster-whisper's own cache (Hugging Face hub layout), looked up offline only."""
    try:
        from faster_whisper.utils import download_model

        return Path(download_model(name, local_files_only=True))
    except Exception:  # noqa: BLE001 — any failure here just means "not in that cache"
        return None


def resolve_model(model: str, backend: str) -> Path:
    """The local files for `model` (a name or a path) and `backend`, or ModelNotFoundError."""
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    path = Path(model).expanduser()
    if path.exists():
        if backend == "faster-whisper" and (path / "model.bin").is_file():
            return path
        if backend == "openai-whisper" and path.is_file() and path.suffix == ".pt":
            return path
        if backend == "openai-whisper" and (path / "model.bin").is_file():
            raise ModelNotFoundError(
                f"{path} is a CTranslate2 model; for openai-whisper convert it once with "
                f"pipeline.transcribe.convert.ct2_to_openai_checkpoint({str(path)!r}, 'model.pt') and pass the .pt"
            )
        raise ModelNotFoundError(f"{path} is not a {backend} model (expected a folder with model.bin, or a .pt checkpoint)")
    if "/" in model or model.endswith(".pt"):
        raise ModelNotFoundError(f"model path {model} does not exist. " + how_to_provide(Path(model).stem))
    if model in BUNDLED:
        return assemble_ct2(model) if backend == "faster-whisper" else assemble_openai(model)
    if backend == "faster-whisper":
        for candidate in (ct2_dir(model), _hf_cache_ct2(model)):
            if candidate is not None and (candidate / "model.bin").is_file():
                return candidate
    else:
        for candidate in (openai_checkpoint(model), Path.home() / ".cache" / "whisper" / f"{model}.pt"):
            if candidate.is_file():
                return candidate
    raise ModelNotFoundError(how_to_provide(model))


def resolve_backend(model: str, backend: str = "auto") -> str:
    """The backend that will run `model`: "auto" is faster-whisper when its files exist, else openai-whisper."""
    if backend != "auto":
        if backend not in BACKENDS:
            raise ConfigError(f"backend: unknown {backend!r}; choose auto or one of {', '.join(BACKENDS)}")
        return backend
    try:
        resolve_model(model, "faster-whisper")
        return "faster-whisper"
    except ModelNotFoundError:
        try:
            resolve_model(model, "openai-whisper")
        except ModelNotFoundError:
            raise ModelNotFoundError(how_to_provide(model)) from None
        return "openai-whisper"


def check_options(backend: str, options: TranscribeOptions) -> None:
    """Options the resolved backend cannot honour are a ConfigError before any take, not a reject per take."""
    if backend == "openai-whisper" and options.vad_filter:
        raise ConfigError("transcribe.vad_filter (--vad) is a faster-whisper option; the openai-whisper backend has no VAD")


_LOADED: dict[tuple[str, str, str, int], Transcriber] = {}
_LOCK = threading.Lock()


def load_transcriber(
    model: str = PRODUCTION_DEFAULT,
    backend: str = "auto",
    compute_type: str = "int8",
    threads: int = 0,
) -> Transcriber:
    """A loaded transcriber, shared per process (loading weights costs seconds).

    backend "auto": faster-whisper when its model is available, else openai-whisper.
    """
    backend = resolve_backend(model, backend)
    key = (model, backend, compute_type, threads)
    with _LOCK:
        if key not in _LOADED:
            files = resolve_model(model, backend)
            if backend == "faster-whisper":
                from pipeline.transcribe.faster_backend import FasterWhisperTranscriber

                _LOADED[key] = FasterWhisperTranscriber(files, model, compute_type=compute_type, threads=threads)
            else:
                from pipeline.transcribe.openai_backend import OpenAIWhisperTranscriber

                _LOADED[key] = OpenAIWhisperTranscriber(files, model, threads=threads)
        return _LOADED[key]


def transcribe(
    audio16k,
    model: str = PRODUCTION_DEFAULT,
    backend: str = "auto",
    options: TranscribeOptions = TranscribeOptions(),
    rules: HallucinationRules = HallucinationRules(),
) -> Transcription:
    """Load (once), transcribe, flag suspected hallucinations (incl. the whole-take voice gate)."""
    result = load_transcriber(model, backend).transcribe(audio16k, options)
    return review(result, audio16k, rules)

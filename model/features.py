"""Audio features per clip, computed once and cached on disk keyed by clip content + encoder.

`logmel`: Whisper's 80-band log-mel (16 kHz, 10 ms hop) averaged to 25 frames/s — the input of the
from-scratch CNN/Transformer encoders. `whisper-encoder:<name>`: the frozen Whisper encoder's states
(50 frames/s, averaged to 25), taken from the dataset's `features` table where ingest kept them,
else computed here (one 30-s window per clip, ~0.7 s on 2 cores) and cached.
`whisper-encoder:<name>:below-top<k>`: the states entering the encoder's top k blocks, for a model
that tunes those blocks (model.encoders.WhisperTuned); the frozen lower blocks still run once per clip.
`pitch-pyin@25fps` (model.pitch): F0, voicing and vibrato/stability/glide cues; any key + `+pitch`
is that key's frames with the pitch stream's columns appended (each part cached on its own).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from model.data import Example, stream_audio
from model.pitch import PITCH, PITCH_SUFFIX, pitch_features, with_pitch
from pipeline.audio import decode_audio_bytes
from pipeline.errors import ConfigError
from pipeline.fsio import atomic_writer
from pipeline.preprocess import to_whisper_input
from pipeline.transcribe.types import ENCODER_FPS, ENCODER_KEY_PREFIX, WHISPER_RATE, encoder_feature_key

FRAMES_PER_SECOND = 25
LOGMEL = "logmel80@25fps"


def cache_dir() -> Path:
    env = os.environ.get("CANTOLAB_FEATURE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "cantolab" / "features"


def whisper_key(name: str, below_top: int = 0) -> str:
    """The encoder_model key ingest writes to the `features` table (pipeline.segment); with below_top=k,
    the key of the states entering the top k blocks (never written by ingest)."""
    return encoder_feature_key(name, below_top)


def parse_whisper_key(key: str) -> tuple[str, int]:
    """(model name, k) from a whisper_key."""
    rest = key.split(":", 1)[1]
    name, _, below = rest.partition(":below-top")
    return name, int(below) if below else 0


def _pool_time(x: np.ndarray, factor: int) -> np.ndarray:
    n = (len(x) // factor) * factor
    if n == 0:
        return x.mean(axis=0, keepdims=True)
    return x[:n].reshape(n // factor, factor, x.shape[1]).mean(axis=1)


def clip_audio_16k(audio_flac: bytes) -> np.ndarray:
    samples, rate = decode_audio_bytes(audio_flac)
    return to_whisper_input(samples, rate)


def logmel(audio16k: np.ndarray) -> np.ndarray:
    """(frames at 25/s, 80) float32."""
    import torch
    from whisper.audio import log_mel_spectrogram

    mel = log_mel_spectrogram(torch.from_numpy(np.ascontiguousarray(audio16k, dtype=np.float32)), 80)
    return _pool_time(mel.numpy().T, 4).astype(np.float32)


def load_whisper(name: str):
    """The bundled openai-whisper model (assembled by pipeline.models_cache), on the CPU, in eval mode."""
    from pipeline.models_cache import assemble_openai
    from pipeline.transcribe.openai_backend import load_openai_checkpoint

    return load_openai_checkpoint(assemble_openai(name))


def check_tunable(name: str, n_blocks: int, k: int) -> None:
    if not 0 <= k <= n_blocks:
        raise ConfigError(f"Whisper {name} has {n_blocks} encoder blocks; cannot tune the top {k}")


class WhisperEncoder:
    """The bundled Whisper encoder (frozen) over one 30-s window per clip; with below_top=k it stops
    before the top k blocks (no final layer norm), giving the input of a model that tunes them."""

    def __init__(self, name: str = "base", device: str = "cpu", below_top: int = 0):
        self.name = name
        self.device = device
        self.model = load_whisper(name).to(device)
        check_tunable(name, len(self.model.encoder.blocks), below_top)
        self.below_top = below_top

    def states(self, audio16k: np.ndarray):
        """(1500, dim) states for the 30-s window (50 per second), as a tensor on the device."""
        import torch
        import torch.nn.functional as F
        from whisper.audio import N_SAMPLES, log_mel_spectrogram, pad_or_trim

        audio = pad_or_trim(torch.from_numpy(np.ascontiguousarray(audio16k, dtype=np.float32)), N_SAMPLES)
        mel = log_mel_spectrogram(audio, self.model.dims.n_mels).to(self.device)
        enc = self.model.encoder
        with torch.inference_mode():
            if not self.below_top:
                return enc(mel[None])[0]
            x = F.gelu(enc.conv2(F.gelu(enc.conv1(mel[None])))).permute(0, 2, 1)
            x = x + enc.positional_embedding
            for block in enc.blocks[: len(enc.blocks) - self.below_top]:
                x = block(x)
            return x[0]

    def __call__(self, audio16k: np.ndarray) -> np.ndarray:
        states = self.states(audio16k).float().cpu().numpy()
        keep = max(1, min(len(states), math.ceil(len(audio16k) / WHISPER_RATE * ENCODER_FPS)))
        return _pool_time(states[:keep], 2).astype(np.float32)


@dataclass
class FeatureStats:
    computed: int = 0
    cached: int = 0
    from_dataset: int = 0
    seconds: float = 0.0

    @property
    def seconds_per_computed_clip(self) -> float | None:
        return self.seconds / self.computed if self.computed else None


def _kept_ids(dataset, key: str) -> set[str]:
    """Clips whose encoder states ingest kept in the `features` table under this key (ids only: small)."""
    if dataset is None or not dataset.exists("features"):
        return set()
    return {b["clip_id"] for batch in dataset.scan("features", ["clip_id"], {"encoder_model": [key]}, 4096) for b in batch.to_pylist()}


def _dataset_frames(dataset, key: str, clip_ids) -> Iterator[tuple[str, np.ndarray]]:
    """(clip_id, states at 25 frames/s) for those clips, read from the `features` table a batch at a time."""
    if dataset is None or not clip_ids or not dataset.exists("features"):
        return
    columns = ["clip_id", "n_frames", "dim", "frames"]
    for batch in dataset.scan("features", columns, {"encoder_model": [key], "clip_id": clip_ids}, 64):
        for row in batch.to_pylist():
            arr = np.frombuffer(row["frames"], dtype="<f2").reshape(int(row["n_frames"]), int(row["dim"])).astype(np.float32)
            yield row["clip_id"], _pool_time(arr, 2)


def _frames_from_dataset(dataset, key: str, clip_ids=None) -> dict[str, np.ndarray]:
    if clip_ids is None:
        clip_ids = _kept_ids(dataset, key)
    return dict(_dataset_frames(dataset, key, list(clip_ids)))


def clip_features(
    examples: list[Example],
    encoder: str = LOGMEL,
    dataset=None,
    progress=None,
    device: str = "cpu",
    stats: FeatureStats | None = None,
) -> list[np.ndarray]:
    """One (frames, dim) array per example, in order; cached under cache_dir()/<encoder>/."""
    stats = stats if stats is not None else FeatureStats()
    if encoder.endswith(PITCH_SUFFIX):
        audio = clip_features(examples, encoder.removesuffix(PITCH_SUFFIX), dataset, None, device, stats)
        return with_pitch(audio, clip_features(examples, PITCH, None, progress, device, stats))
    folder = cache_dir() / encoder.replace(":", "_").replace("/", "_")
    folder.mkdir(parents=True, exist_ok=True)
    if dataset is None:  # examples loaded lazily know their dataset (a run's test clips, scored by the retrain flow)
        dataset = next((ex.dataset for ex in examples if ex.dataset is not None), None)
    wanted = {ex.clip_id for ex in examples}
    kept = _frames_from_dataset(dataset, encoder, wanted & _kept_ids(dataset, encoder)) if encoder.startswith(ENCODER_KEY_PREFIX) else {}
    out = []
    computer = _Computer(encoder, device, stats, folder)
    _compute_streamed(examples, set(kept), computer, folder)
    for ex in examples:
        if ex.clip_id in kept:
            out.append(kept[ex.clip_id])
            stats.from_dataset += 1
        else:
            out.append(computer(ex))
        if progress is not None:
            progress()
    return out


class _Computer:
    """One clip's features from the cache folder, else computed from its audio and cached."""

    def __init__(self, encoder: str, device: str, stats: FeatureStats, folder: Path):
        self.encoder, self.device, self.stats, self.folder = encoder, device, stats, folder
        self.compute = None
        self.fresh: set[str] = set()  # computed in this pass (read back from the cache, not counted twice)

    def __call__(self, ex: Example) -> np.ndarray:
        import time

        path = self.folder / f"{ex.content_key}.npy"
        if path.exists():
            self.stats.cached += ex.content_key not in self.fresh
            return np.load(path)
        t0 = time.perf_counter()
        audio = clip_audio_16k(ex.audio())
        if self.encoder == LOGMEL:
            feats = logmel(audio)
        elif self.encoder == PITCH:
            feats = pitch_features(audio)
        elif self.encoder.startswith(ENCODER_KEY_PREFIX):
            if self.compute is None:
                name, below_top = parse_whisper_key(self.encoder)
                self.compute = WhisperEncoder(name, self.device, below_top)
            feats = self.compute(audio)
        else:
            raise ConfigError(f"unknown audio feature encoder {self.encoder!r}")
        with atomic_writer(path, "wb") as fh:
            np.save(fh, feats)
        self.stats.computed += 1
        self.stats.seconds += time.perf_counter() - t0
        self.fresh.add(ex.content_key)
        return feats


def _compute_streamed(examples: list[Example], kept: set[str], computer: _Computer, folder: Path) -> None:
    """Features of lazily loaded examples that neither the `features` table nor the cache has: their
    FLAC read a record batch at a time from the dataset and encoded straight into the per-clip cache."""
    lazy = [ex for ex in examples if ex.audio_flac is None and ex.dataset is not None and ex.clip_id not in kept]
    lazy = {ex.clip_id: ex for ex in lazy if not (folder / f"{ex.content_key}.npy").exists()}
    if lazy:
        for clip_id, audio in stream_audio(next(iter(lazy.values())).dataset, sorted(lazy)):
            computer(replace(lazy[clip_id], audio_flac=audio))


def _store_key(encoder: str, examples: list[Example], kept: set[str]) -> str:
    h = hashlib.sha256(encoder.encode())
    for ex in examples:
        h.update(f"{ex.content_key}:{int(ex.clip_id in kept)}\n".encode())
    return h.hexdigest()[:24]


def feature_store(
    examples: list[Example],
    encoder: str = LOGMEL,
    dataset=None,
    progress=None,
    device: str = "cpu",
    stats: FeatureStats | None = None,
    keep: int = 3,
):
    """The examples' features as a FrameStore view in example order (model.framestore): on disk,
    read per batch, so training holds a batch, not the corpus. Built in one streaming pass — the
    `features` table's states a record batch at a time, then the per-clip cache / computed ones —
    under cache_dir()/stores/<encoder>/<key of the clips' contents>, and reused by the next run on
    the same clips (the nightly retrain). The newest `keep` stores per encoder are kept."""
    from model.framestore import FrameStore
    from pipeline.fsio import replace_dir, staging_dir

    stats = stats if stats is not None else FeatureStats()
    safe = encoder.replace(":", "_").replace("/", "_")
    # `<audio>+pitch`: the audio encoder's frames with the pitch stream's columns appended per clip
    base, pitched = encoder.removesuffix(PITCH_SUFFIX), encoder.endswith(PITCH_SUFFIX)
    folder = cache_dir() / base.replace(":", "_").replace("/", "_")
    folder.mkdir(parents=True, exist_ok=True)
    kept = _kept_ids(dataset, base) & {ex.clip_id for ex in examples} if base.startswith(ENCODER_KEY_PREFIX) else set()
    home = cache_dir() / "stores" / safe
    dest = home / _store_key(encoder, examples, kept)
    position: dict[str, int] = {}
    if (dest / "order.json").exists():
        position = json.loads((dest / "order.json").read_text())
        os.utime(dest)  # the newest again, for pruning
        stats.cached += len(examples)
        for _ in examples:
            if progress is not None:
                progress()
    else:
        computer = _Computer(base, device, stats, folder)
        _compute_streamed(examples, kept, computer, folder)
        if pitched:
            pitch_folder = cache_dir() / PITCH
            pitch_folder.mkdir(parents=True, exist_ok=True)
            pitch = _Computer(PITCH, device, stats, pitch_folder)
            _compute_streamed(examples, set(), pitch, pitch_folder)
        by_id = {ex.clip_id: ex for ex in examples}

        def joined(ex: Example, frames: np.ndarray) -> np.ndarray:
            return with_pitch([frames], [pitch(ex)])[0] if pitched else frames

        def clips():
            for clip_id, frames in _dataset_frames(dataset, base, sorted(kept)):  # in the table's order
                if clip_id in position:
                    continue
                position[clip_id] = len(position)
                stats.from_dataset += 1
                if progress is not None:
                    progress()
                yield joined(by_id[clip_id], frames)
            for ex in examples:
                if ex.clip_id not in position:
                    position[ex.clip_id] = len(position)
                    yield joined(ex, computer(ex))
                    if progress is not None:
                        progress()

        new = staging_dir(dest)
        try:
            FrameStore.write(new, clips())
            with atomic_writer(new / "order.json", "w", encoding="utf-8") as fh:
                json.dump(position, fh)
            replace_dir(new, dest)
        finally:
            if new.exists():
                shutil.rmtree(new, ignore_errors=True)
        _prune(home, keep, dest)
    return FrameStore(dest).subset([position[ex.clip_id] for ex in examples])


def _prune(home: Path, keep: int, current: Path) -> None:
    """Remove all but the newest `keep` stores (a reader that opened one keeps its open file)."""
    stores = sorted((p for p in home.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in stores[keep:]:
        if old != current:
            shutil.rmtree(old, ignore_errors=True)


def feature_name(model) -> str:
    """The audio features a ModelConfig reads (with the pitch stream's columns after them when model.pitch)."""
    key = LOGMEL if model.audio_encoder != "whisper" else whisper_key(model.whisper_model, model.whisper_tune_layers)
    return key + PITCH_SUFFIX if getattr(model, "pitch", False) else key


def normalize_features(
    feats: list[np.ndarray], groups: list[str], mode: str, reference: tuple[np.ndarray, np.ndarray] | None = None
) -> tuple[list[np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Standardize frames: globally (train statistics, saved with the model), per singer, per clip, or
    not at all ("none": tuned Whisper blocks must see the states their lower blocks give).

    Per-singer standardization uses no labels (a studio session gives many clips of one singer), so it
    is legitimate for held-out singers too; the report says when it was used.
    """
    if mode == "none":
        return list(feats), reference
    if reference is None:
        stacked = np.concatenate(feats, axis=0)
        reference = (stacked.mean(axis=0), stacked.std(axis=0) + 1e-5)
    if mode == "global":
        mean, std = reference
        return [(f - mean) / std for f in feats], reference
    if mode == "clip":
        return [(f - f.mean(axis=0)) / (f.std(axis=0) + 1e-5) for f in feats], reference
    if mode == "singer":
        by_group: dict[str, list[np.ndarray]] = {}
        for f, g in zip(feats, groups):
            by_group.setdefault(g, []).append(f)
        moments = {}
        for g, fs in by_group.items():
            stacked = np.concatenate(fs, axis=0)
            moments[g] = (stacked.mean(axis=0), stacked.std(axis=0) + 1e-5)
        return [(f - moments[g][0]) / moments[g][1] for f, g in zip(feats, groups)], reference
    raise ConfigError(f"unknown feature normalization {mode!r}")

"""The shared encoder: audio frames and/or lyric tokens → H ∈ R^{B×T×d} with a padding mask."""

from __future__ import annotations

import functools
import math
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from model.config import ModelConfig
from model.text import Vocab, minilm_path


def _positions(n: int, d: int) -> torch.Tensor:
    pos = torch.arange(n).unsqueeze(1)
    div = torch.exp(torch.arange(0, d, 2) * (-math.log(10000.0) / d))
    pe = torch.zeros(n, d)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div)
    return pe


class SinusoidalPositions(nn.Module):
    def __init__(self, d: int, max_len: int = 4096):
        super().__init__()
        self.register_buffer("pe", _positions(max_len, d), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.pe[: x.shape[1]].unsqueeze(0)


def _transformer(d: int, layers: int, heads: int, dropout: float) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(d, heads, 2 * d, dropout, batch_first=True, norm_first=True)
    return nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)


class AudioCNN(nn.Module):
    """1-D convolutions over time (frames × features), trained from scratch."""

    def __init__(self, in_dim: int, d: int, layers: int, dropout: float):
        super().__init__()
        blocks, width = [], in_dim
        for _ in range(max(1, layers)):
            blocks += [nn.Conv1d(width, d, 5, padding=2), nn.BatchNorm1d(d), nn.GELU(), nn.Dropout(dropout)]
            width = d
        self.net = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        y = self.net((x * mask.unsqueeze(-1)).transpose(1, 2)).transpose(1, 2)
        return y * mask.unsqueeze(-1)


class AudioTransformer(nn.Module):
    def __init__(self, in_dim: int, d: int, layers: int, heads: int, dropout: float):
        super().__init__()
        self.inp = nn.Linear(in_dim, d)
        self.pos = SinusoidalPositions(d)
        self.enc = _transformer(d, layers, heads, dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.enc(self.pos(self.inp(x)), src_key_padding_mask=~mask)


class WhisperStates(nn.Module):
    """Frozen Whisper encoder states (cached per clip) projected to d; only the projection learns."""

    def __init__(self, in_dim: int, d: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(in_dim), nn.Linear(in_dim, d), nn.GELU(), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class WhisperBlock(nn.Module):
    """One Whisper encoder block (pre-norm attention + MLP, parameter names as openai-whisper's) that
    also takes a padding mask: Whisper's own block attends to every frame of its 30-s window."""

    def __init__(self, d: int, heads: int):
        super().__init__()
        self.heads = heads
        self.attn = nn.ModuleDict(
            {"query": nn.Linear(d, d), "key": nn.Linear(d, d, bias=False), "value": nn.Linear(d, d), "out": nn.Linear(d, d)}
        )
        self.attn_ln = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))
        self.mlp_ln = nn.LayerNorm(d)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        h = self.attn_ln(x)
        q, k, v = (self.attn[n](h).view(b, t, self.heads, -1).transpose(1, 2) for n in ("query", "key", "value"))
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :])
        x = x + self.attn["out"](a.transpose(1, 2).reshape(b, t, d))
        return x + self.mlp(self.mlp_ln(x))


@functools.lru_cache(maxsize=2)
def whisper_top(name: str, k: int) -> tuple[int, int, dict[str, torch.Tensor]]:
    """(width, heads, weights) of the top k encoder blocks and the final layer norm of a bundled
    Whisper, loaded once per process (every fold and seed starts from them)."""
    from model.features import check_tunable, load_whisper

    enc = load_whisper(name).encoder
    n = len(enc.blocks)
    check_tunable(name, n, k)
    weights = {
        f"blocks.{i}.{key}": v.detach().clone() for i, block in enumerate(enc.blocks[n - k :]) for key, v in block.state_dict().items()
    }
    weights |= {f"ln_post.{key}": v.detach().clone() for key, v in enc.ln_post.state_dict().items()}
    return enc.ln_post.normalized_shape[0], enc.blocks[0].attn.n_head, weights


class WhisperTuned(nn.Module):
    """Whisper's top k encoder blocks and final layer norm, from the bundled weights, trained with the
    model over the cached states entering them (model.features, `below-top<k>`); then projected to d."""

    def __init__(self, name: str, k: int, d: int, dropout: float):
        super().__init__()
        width, heads, weights = whisper_top(name, k)
        self.blocks = nn.ModuleList(WhisperBlock(width, heads) for _ in range(k))
        self.ln_post = nn.LayerNorm(width)
        missing, unexpected = self.load_state_dict(weights, strict=False)
        if unexpected or missing:
            raise RuntimeError(f"Whisper {name} weights do not fit its top blocks: missing {missing}, unexpected {unexpected}")
        self.proj = nn.Sequential(nn.Linear(width, d), nn.GELU(), nn.Dropout(dropout))

    def pretrained(self) -> list[nn.Parameter]:
        return [p for m in (self.blocks, self.ln_post) for p in m.parameters()]

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, mask)
        return self.proj(self.ln_post(x))


class PitchStream(nn.Module):
    """The pitch stream's frames (model.pitch, same 25 frames/s as the audio) → d, by 1-D convolutions
    over time; added to the audio encoder's states, so every later part sees both."""

    def __init__(self, in_dim: int, d: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(nn.Conv1d(in_dim, d, 5, padding=2), nn.GELU(), nn.Dropout(dropout), nn.Conv1d(d, d, 5, padding=2))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        y = self.net((x * mask.unsqueeze(-1)).transpose(1, 2)).transpose(1, 2)
        return y * mask.unsqueeze(-1)


class TextCNN(nn.Module):
    def __init__(self, vocab_size: int, d: int, dropout: float):
        super().__init__()
        self.emb = nn.Embedding(vocab_size, d, padding_idx=0)
        self.convs = nn.ModuleList([nn.Conv1d(d, d, k, padding=k // 2) for k in (3, 5)])
        self.out = nn.Sequential(nn.GELU(), nn.Dropout(dropout))

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        e = self.emb(ids).transpose(1, 2)
        y = sum(conv(e)[..., : ids.shape[1]] for conv in self.convs).transpose(1, 2)
        return self.out(y) * mask.unsqueeze(-1)


class TextTransformer(nn.Module):
    def __init__(self, vocab_size: int, d: int, layers: int, heads: int, dropout: float):
        super().__init__()
        self.emb = nn.Embedding(vocab_size, d, padding_idx=0)
        self.pos = SinusoidalPositions(d)
        self.enc = _transformer(d, layers, heads, dropout)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.enc(self.pos(self.emb(ids)), src_key_padding_mask=~mask)


FROZEN_CACHE_BYTES = 1 << 30  # frozen text states kept per model (~50k typical transcripts with MiniLM)


def resolve_checkpoint(name: str) -> Path:
    return minilm_path() if name == "minilm" else Path(name)


class PretrainedText(nn.Module):
    """Any transformers checkpoint by path (BERT family, GPT-2, T5's encoder), offline only."""

    def __init__(self, path: str | Path, d: int, freeze: bool):
        super().__init__()
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from transformers import AutoConfig, AutoModel, AutoTokenizer, T5EncoderModel
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # a local checkpoint loads in milliseconds, once per fold and seed

        path = str(path)
        config = AutoConfig.from_pretrained(path, local_files_only=True)
        if getattr(config, "is_encoder_decoder", False):
            self.backbone = T5EncoderModel.from_pretrained(path, local_files_only=True)
        else:
            self.backbone = AutoModel.from_pretrained(path, local_files_only=True)
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        if self.tokenizer.pad_token is None:  # GPT-2 has none
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token
        self.freeze = freeze
        if freeze:
            self.backbone.requires_grad_(False)
            self.backbone.eval()
        hidden = getattr(config, "hidden_size", None) or getattr(config, "d_model", None) or config.n_embd
        self.hidden = hidden
        self.proj = nn.Linear(hidden, d)
        self._cache: dict[tuple[int, ...], torch.Tensor] = {}
        self._cache_bytes = 0

    def train(self, mode: bool = True):
        super().train(mode)
        if self.freeze:
            self.backbone.eval()  # a frozen backbone keeps dropout off
        return self

    def tokenize(self, texts: list[str], max_tokens: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        enc = self.tokenizer([t or " " for t in texts], padding=True, truncation=True, max_length=max_tokens, return_tensors="pt")
        return enc["input_ids"].to(device), enc["attention_mask"].to(device).bool()

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.freeze:
            return self.proj(self._frozen_states(ids, mask))
        return self.proj(self.backbone(input_ids=ids, attention_mask=mask.long()).last_hidden_state)

    @torch.no_grad()
    def _frozen_states(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """A frozen backbone gives each token sequence the same states every epoch: run it once per
        distinct sequence (the backbone was most of a lyrics model's training time)."""
        keys = [tuple(row[m].tolist()) for row, m in zip(ids, mask)]
        missing = [i for i, k in enumerate(keys) if k not in self._cache]
        fresh: dict[tuple[int, ...], torch.Tensor] = {}
        if missing:
            sel = torch.tensor(missing, device=ids.device)
            states = self.backbone(input_ids=ids[sel], attention_mask=mask[sel].long()).last_hidden_state
            for j, i in enumerate(missing):
                kept = states[j, : len(keys[i])]
                if keys[i] in self._cache:
                    continue  # the same sequence twice in one batch
                if self._cache_bytes + kept.nbytes <= FROZEN_CACHE_BYTES:  # past the cap: recompute, never grow
                    self._cache[keys[i]] = kept.clone()  # not a view that would pin the whole batch
                    self._cache_bytes += kept.nbytes
                else:
                    fresh[keys[i]] = kept
        out = torch.zeros(ids.shape[0], ids.shape[1], self.hidden, device=ids.device)
        for i, k in enumerate(keys):
            out[i, mask[i]] = self._cache[k] if k in self._cache else fresh[k]
        return out


def pool_frames(h: torch.Tensor, mask: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Masked mean over groups of k frames: (B, T, d) → (B, ⌈T/k⌉, d); a group with any real frame is real."""
    b, t, d = h.shape
    pad = (-t) % k
    if pad:
        h = F.pad(h, (0, 0, 0, pad))
        mask = F.pad(mask, (0, pad), value=False)
    m = mask.view(b, -1, 1, k).to(h.dtype)
    # (1 × k) @ (k × d) per group: a weighted sum without a (B, T, d) temporary (the batch's raw states are 32 MB)
    pooled = (m @ h.view(b, -1, k, d)).squeeze(2) / m.sum(-1).clamp_min(1.0)
    return pooled, mask.view(b, -1, k).any(-1)


class SharedEncoder(nn.Module):
    """audio | lyrics | audio+lyrics (both, fused into one sequence with modality embeddings)."""

    def __init__(self, cfg: ModelConfig, audio_dim: int | None, vocab: Vocab | None, max_tokens: int = 48):
        super().__init__()
        d = cfg.d_model
        self.cfg = cfg
        self.max_tokens = max_tokens
        self.uses_audio = "audio" in cfg.encoder
        self.uses_lyrics = "lyrics" in cfg.encoder
        self.vocab = vocab
        self.audio = self.lyrics = self.pitch = None
        if self.uses_audio and cfg.pitch:
            from model.pitch import PITCH_DIM

            audio_dim -= PITCH_DIM  # the input's last PITCH_DIM columns are the pitch stream (model.features, `+pitch`)
            self.pitch = PitchStream(PITCH_DIM, d, cfg.dropout)
        self.audio_dim = audio_dim
        if self.uses_audio:
            if cfg.audio_encoder == "cnn":
                self.audio = AudioCNN(audio_dim, d, cfg.layers, cfg.dropout)
            elif cfg.audio_encoder == "transformer":
                self.audio = AudioTransformer(audio_dim, d, cfg.layers, cfg.heads, cfg.dropout)
            elif cfg.whisper_tune_layers:
                self.audio = WhisperTuned(cfg.whisper_model, cfg.whisper_tune_layers, d, cfg.dropout)
            else:
                self.audio = WhisperStates(audio_dim, d, cfg.dropout)
        if self.uses_lyrics:
            if cfg.lyrics_encoder == "textcnn":
                self.lyrics = TextCNN(len(vocab), d, cfg.dropout)
            elif cfg.lyrics_encoder == "transformer":
                self.lyrics = TextTransformer(len(vocab), d, cfg.layers, cfg.heads, cfg.dropout)
            else:
                self.lyrics = PretrainedText(resolve_checkpoint(cfg.lyrics_encoder), d, cfg.freeze_pretrained)
        self.fuse = None
        if self.uses_audio and self.uses_lyrics:
            self.modality = nn.Parameter(torch.zeros(2, d))
            nn.init.normal_(self.modality, std=0.02)
            self.fuse = _transformer(d, 1, cfg.heads, cfg.dropout)

    def pretrained(self) -> list[nn.Parameter]:
        """Trainable pretrained weights (tuned Whisper blocks, an unfrozen lyrics backbone): they get
        the smaller pretrained_lr."""
        out = self.audio.pretrained() if isinstance(self.audio, WhisperTuned) else []
        if isinstance(self.lyrics, PretrainedText) and not self.lyrics.freeze:
            out += list(self.lyrics.backbone.parameters())
        return out

    def tokenize(self, texts: list[str], device) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(self.lyrics, PretrainedText):
            return self.lyrics.tokenize(texts, self.max_tokens, device)
        rows = [self.vocab.encode(t, self.max_tokens) for t in texts]
        width = max(len(r) for r in rows)
        ids = torch.zeros(len(rows), width, dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
        return ids.to(device), (ids != 0).to(device)

    def forward(self, audio, audio_mask, texts) -> tuple[torch.Tensor, torch.Tensor]:
        parts, masks = [], []
        if self.uses_audio:
            k = self.cfg.frame_pool
            pooled = k > 1 and isinstance(self.audio, WhisperStates)
            if pooled:
                # A per-frame projection: pooling its input gives the same sequence length for k× less
                # work (the projection over 16k frames per batch was most of an epoch at 28.6k clips).
                audio, audio_mask = pool_frames(audio, audio_mask, k)
            if self.pitch is not None:
                h = self.audio(audio[..., : self.audio_dim], audio_mask) + self.pitch(audio[..., self.audio_dim :], audio_mask)
            else:
                h = self.audio(audio, audio_mask)
            m = audio_mask
            if k > 1 and not pooled:
                h, m = pool_frames(h, m, k)
            parts.append(h)
            masks.append(m)
        if self.uses_lyrics:
            device = audio.device if audio is not None else next(self.parameters()).device
            ids, mask = self.tokenize(texts, device)
            parts.append(self.lyrics(ids, mask))
            masks.append(mask)
        if self.fuse is None:
            return parts[0], masks[0]
        h = torch.cat([parts[0] + self.modality[0], parts[1] + self.modality[1]], dim=1)
        m = torch.cat(masks, dim=1)
        return self.fuse(h, src_key_padding_mask=~m), m

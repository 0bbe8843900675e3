"""Transcription error rates against reference lyrics (jiwer).

Text is compared after lower-casing and removing punctuation. Languages written without spaces
between words (ZH, JA, KO counted by character here) are scored by character error rate only.
"""

from __future__ import annotations

import re
import unicodedata

import jiwer

CHARACTER_LANGUAGES = frozenset({"zh", "ja", "ko"})


def normalize_text(text: str) -> str:
    text = unicodedata.normalize("NFKC", text or "").lower()
    text = re.sub(r"[^\w\s']|_", " ", text)
    text = text.replace("'", "")
    return " ".join(text.split())


def corpus_rates(pairs: list[tuple[str, str]], language: str | None = None) -> dict[str, float | None]:
    """Corpus-level rates (errors summed over all references), the usual way to report WER/CER."""
    refs = [normalize_text(r) for _, r in pairs]
    hyps = [normalize_text(h) or " " for h, _ in pairs]
    lang = (language or "").lower()
    if lang in CHARACTER_LANGUAGES:
        cer = float(jiwer.cer([r.replace(" ", "") for r in refs], [h.replace(" ", "") or " " for h in hyps]))
        return {"wer": None, "cer": cer, "primary": cer}
    wer, cer = float(jiwer.wer(refs, hyps)), float(jiwer.cer(refs, hyps))
    return {"wer": wer, "cer": cer, "primary": wer}

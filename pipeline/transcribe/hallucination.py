"""Flags for segments that look invented rather than sung.

Whisper hallucinates on singing: held vowels and accompaniment become repeated phrases or stock
subtitles. Flagged segments are kept (with their reasons) and counted, never dropped silently.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from pipeline.transcribe.types import WHISPER_RATE, Segment, Transcription

# Stock phrases Whisper emits over music and silence (from its subtitle training data).
_STOCK = re.compile(
    r"thank(s| you) for watching|subscribe|subtitles? (by|made)|amara\.org|transcribed by|www\.|\.com\b",
    re.IGNORECASE,
)
# Non-lexical output over instruments or tones: bracketed sound tags ("[Music]", "(humming)").
_SOUND_TAG = re.compile(r"^\s*[\[(][^\])]*[\])]\s*$")
_LETTER = re.compile(r"[^\W\d_]")  # any letter of any script


@dataclass(frozen=True)
class HallucinationRules:
    max_compression_ratio: float = 2.4
    # A phrase of 1–4 words repeated this many times in a row (singing repeats, but rarely 4×).
    max_ngram_repeats: int = 4
    no_speech_prob: float = 0.6
    low_avg_logprob: float = -1.0
    # Whisper's own rule needs both; this alone is enough (sung lyrics measured ≤ 0.55 here).
    certain_no_speech_prob: float = 0.9
    # Whole-take voice gate (Silero VAD, bundled with faster-whisper): below this much detected
    # voice, whatever Whisper wrote is flagged `no_voice` and left out of the transcript. Every one
    # of 98 GTSinger and 20 RAVDESS clips measured >= 0.5 s; tones and noise measured 0 s.
    min_voice_seconds: float = 0.3


def max_consecutive_ngram_repeats(words: list[str], max_n: int = 4) -> int:
    best = 1 if words else 0
    for n in range(1, max_n + 1):
        for start in range(0, len(words) - n):
            count, pos = 1, start + n
            while pos + n <= len(words) and words[pos : pos + n] == words[start : start + n]:
                count += 1
                pos += n
            best = max(best, count)
    return best


def tokens_of(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def hallucination_reasons(seg: Segment, rules: HallucinationRules = HallucinationRules()) -> list[str]:
    reasons = []
    if seg.compression_ratio > rules.max_compression_ratio:
        reasons.append("compression_ratio")
    if max_consecutive_ngram_repeats(tokens_of(seg.text)) >= rules.max_ngram_repeats:
        reasons.append("repeated_ngram")
    if (
        seg.no_speech_prob > rules.no_speech_prob and seg.avg_logprob < rules.low_avg_logprob
    ) or seg.no_speech_prob > rules.certain_no_speech_prob:
        reasons.append("no_speech")
    if _STOCK.search(seg.text):
        reasons.append("stock_phrase")
    if not _LETTER.search(seg.text) or _SOUND_TAG.match(seg.text):  # "♪", ". . .", "1.5%", "[Music]"
        reasons.append("non_lexical")
    return reasons


def flag_segments(segments: list[Segment], rules: HallucinationRules = HallucinationRules()) -> list[Segment]:
    for seg in segments:
        seg.hallucination_reasons = hallucination_reasons(seg, rules)
        seg.suspected_hallucination = bool(seg.hallucination_reasons)
    return segments


def voiced_seconds(audio16k: np.ndarray) -> float:
    """Seconds of voice Silero VAD finds (singing counts; tones, noise and silence do not)."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    chunks = get_speech_timestamps(np.ascontiguousarray(audio16k, dtype=np.float32), VadOptions())
    return sum(c["end"] - c["start"] for c in chunks) / WHISPER_RATE


def review(result: Transcription, audio16k: np.ndarray, rules: HallucinationRules = HallucinationRules()) -> Transcription:
    """Flag every segment, then apply the whole-take voice gate; nothing is removed."""
    flag_segments(result.segments, rules)
    if result.segments and rules.min_voice_seconds > 0:
        result.voiced_seconds = voiced_seconds(audio16k)
        if result.voiced_seconds < rules.min_voice_seconds:
            for seg in result.segments:
                seg.hallucination_reasons.append("no_voice")
                seg.suspected_hallucination = True
    return result

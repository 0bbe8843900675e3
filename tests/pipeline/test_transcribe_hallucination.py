"""Suspected-hallucination flags: kept and explained, never dropped."""

from __future__ import annotations

from pipeline.transcribe import Segment, flag_segments
from pipeline.transcribe.hallucination import max_consecutive_ngram_repeats, tokens_of
from pipeline.transcribe.types import Transcription


def seg(text, **kw):
    return Segment(0.0, 5.0, text, avg_logprob=kw.get("lp", -0.3), no_speech_prob=kw.get("nsp", 0.1), compression_ratio=kw.get("cr", 1.2))


def test_repeated_ngrams():
    assert max_consecutive_ngram_repeats(tokens_of("I love you I love you I love you I love you")) == 4
    assert max_consecutive_ngram_repeats(tokens_of("oh my love we are holding on forever")) == 1
    assert max_consecutive_ngram_repeats(tokens_of("la la la")) == 3


def test_each_rule_flags_with_its_reason():
    segments = flag_segments([
        seg("I love you I love you I love you I love you"),
        seg("holding on forever", cr=3.1),
        seg("you", nsp=0.7, lp=-1.4),
        seg("you", nsp=0.95, lp=-0.5),
        seg("Thank you for watching!"),
        seg("♪"),
        seg("[Music]"),
        seg("1.5%"),
        seg("Oh yeah, and oh my love, we're holding on forever.", nsp=0.5),
    ])  # fmt: skip
    reasons = [s.hallucination_reasons for s in segments]
    assert reasons[0] == ["repeated_ngram"]
    assert reasons[1] == ["compression_ratio"]
    assert reasons[2] == ["no_speech"] and reasons[3] == ["no_speech"]
    assert reasons[4] == ["stock_phrase"]
    assert reasons[5] == reasons[6] == reasons[7] == ["non_lexical"]
    assert reasons[8] == [] and not segments[8].suspected_hallucination
    assert all(s.suspected_hallucination for s in segments[:8])


def test_flagged_lyrics_stay_in_the_transcript_but_non_lyrics_do_not():
    segments = flag_segments([seg("I love you I love you I love you I love you"), seg("♪"), seg("you", nsp=0.95)])
    t = Transcription(segments, "en", None, 5.0, "test", "none")
    assert t.text == "I love you I love you I love you I love you"
    assert t.suspected_hallucinations == 3 and len(t.segments) == 3

"""Labeling configs: the annotators' page and the adjudicator's page.

Hotkeys are 1..n for style and q, w, e, … for emotion so a clip is labeled without the mouse
(Label Studio itself adds Ctrl+Enter to submit; skip has no hotkey — the Skip button).
Both pages show the transcript with a note that says whether Whisper's quality signals flagged it as
a suspected hallucination. The adjudicator's page shows the first-round labels as text (no names,
order drawn per clip) next to the same audio and transcript, and asks for the final style and
emotion.
"""

from __future__ import annotations

from xml.sax.saxutils import quoteattr

from pipeline.vocabulary import LabelSets

STYLE_KEYS = "123456789"
EMOTION_KEYS = "qwertyuio"


def _choices(name: str, title: str, values: tuple[str, ...], keys: str) -> str:
    if len(values) > len(keys):
        raise ValueError(f"{name}: at most {len(keys)} labels have hotkeys, got {len(values)}")
    inner = "\n".join(f"    <Choice value={quoteattr(v)} hotkey={quoteattr(k)}/>" for v, k in zip(values, keys))
    return (
        f"  <Header value={quoteattr(title)}/>\n"
        f'  <Choices name="{name}" toName="audio" choice="single-radio" required="true" showInline="true">\n'
        f"{inner}\n  </Choices>"
    )


def annotator_config(labels: LabelSets) -> str:
    return (
        "<View>\n"
        '  <Audio name="audio" value="$audio" hotkey="space"/>\n'
        '  <Header value="Transcript"/>\n'
        '  <Text name="asr_note" value="$asr_note"/>\n'
        '  <Text name="transcript" value="$transcript"/>\n'
        f"{_choices('style', 'Style', labels.styles, STYLE_KEYS)}\n"
        f"{_choices('emotion', 'Emotion', labels.emotions, EMOTION_KEYS)}\n"
        "</View>"
    )


def adjudication_config(labels: LabelSets) -> str:
    return (
        "<View>\n"
        '  <Audio name="audio" value="$audio" hotkey="space"/>\n'
        '  <Header value="Transcript"/>\n'
        '  <Text name="asr_note" value="$asr_note"/>\n'
        '  <Text name="transcript" value="$transcript"/>\n'
        '  <Header value="First-round labels (order drawn per clip, no names)"/>\n'
        '  <Text name="first_labels" value="$first_labels"/>\n'
        f"{_choices('style', 'Final style', labels.styles, STYLE_KEYS)}\n"
        f"{_choices('emotion', 'Final emotion', labels.emotions, EMOTION_KEYS)}\n"
        "</View>"
    )


def choice_result(field: str, value: str) -> dict:
    """One choice in Label Studio's result format (annotations and predictions alike)."""
    return {"from_name": field, "to_name": "audio", "type": "choices", "value": {"choices": [value]}}

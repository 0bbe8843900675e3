"""Every encoder and interaction variant: forward shapes and gradients reaching the encoder."""

import pytest
import torch

from model.config import ModelConfig
from model.net import MultiTaskNet
from model.text import Vocab

TEXTS = ["la la love you", "我知道风里有诗句", "", "ombra mai fu"]
N_CLASSES = {"style": 2, "emotion": 6}


def _batch(dim=20, t=30):
    audio = torch.randn(4, t, dim)
    mask = torch.ones(4, t, dtype=torch.bool)
    mask[1, 20:] = False  # a shorter clip, padded
    return audio, mask


def _check(net, audio, mask, texts=TEXTS):
    logits, extras = net(audio, mask, texts, return_extras=True)
    assert {k: tuple(v.shape) for k, v in logits.items()} == {"style": (4, 2), "emotion": (4, 6)}
    assert all(torch.isfinite(v).all() for v in logits.values())
    (logits["style"].sum() + logits["emotion"].sum()).backward()
    grads = [p.grad for n, p in net.named_parameters() if n.startswith("encoder.") and p.requires_grad]
    assert grads and any(g is not None and g.abs().sum() > 0 for g in grads)
    return extras


@pytest.mark.parametrize("variant", ["shared", "concat", "oneway", "coattn"])
@pytest.mark.parametrize("audio_encoder", ["cnn", "transformer", "whisper"])
def test_audio_encoders_times_variants(variant, audio_encoder):
    cfg = ModelConfig(encoder="audio", audio_encoder=audio_encoder, variant=variant, d_model=16, layers=1, heads=2)
    dim = 512 if audio_encoder == "whisper" else 20
    net = MultiTaskNet(cfg, N_CLASSES, dim, None)
    audio, mask = _batch(dim)
    extras = _check(net, audio, mask)
    if variant in ("oneway", "coattn"):
        att = extras["style_to_emotion"]
        assert att.shape == (4, 30, 30)
        assert torch.allclose(att.sum(-1), torch.ones(4, 30), atol=1e-5)
        assert att[1, :, 20:].abs().max() == 0  # padding is never attended to
    if variant == "coattn":
        assert "emotion_to_style" in extras


@pytest.mark.parametrize("lyrics", ["textcnn", "transformer"])
@pytest.mark.parametrize("encoder", ["lyrics", "audio+lyrics"])
def test_scratch_lyrics_encoders(lyrics, encoder):
    vocab = Vocab.build(TEXTS)
    cfg = ModelConfig(encoder=encoder, lyrics_encoder=lyrics, d_model=16, layers=1, heads=2)
    net = MultiTaskNet(cfg, N_CLASSES, 20, vocab)
    _check(net, *_batch())


def test_cls_pooling():
    net = MultiTaskNet(ModelConfig(encoder="audio", pool="cls", d_model=16, layers=1, heads=2), N_CLASSES, 20, None)
    _check(net, *_batch())


@pytest.mark.parametrize("which", ["minilm", "gpt2", "t5"])
def test_pretrained_lyrics_encoders_by_path(which, tiny_checkpoints):
    path = "minilm" if which == "minilm" else tiny_checkpoints[which]
    for freeze in (True, False):
        cfg = ModelConfig(encoder="audio+lyrics", lyrics_encoder=path, d_model=16, layers=1, heads=2, freeze_pretrained=freeze)
        net = MultiTaskNet(cfg, N_CLASSES, 20, None)
        _check(net, *_batch())
        backbone_grads = [p.grad for p in net.encoder.lyrics.backbone.parameters()]
        if freeze:
            assert all(g is None for g in backbone_grads)
        else:
            assert any(g is not None and g.abs().sum() > 0 for g in backbone_grads)


@pytest.mark.parametrize("which", ["minilm", "gpt2", "t5"])
def test_frozen_backbone_states_are_reused_and_equal_a_fresh_run(which, tiny_checkpoints):
    path = "minilm" if which == "minilm" else tiny_checkpoints[which]
    cfg = ModelConfig(encoder="lyrics", lyrics_encoder=path, d_model=16, layers=1, heads=2, freeze_pretrained=True)
    lyrics = MultiTaskNet(cfg, N_CLASSES, None, None).encoder.lyrics
    texts = ["la donna è mobile", "happy birthday to you, happy birthday to you", "sì"]
    ids, mask = lyrics.tokenize(texts, 48, "cpu")
    first = lyrics._frozen_states(ids, mask)
    assert len(lyrics._cache) == 3
    again = lyrics._frozen_states(ids[[2, 0]], mask[[2, 0]])  # another batch, other padding
    assert len(lyrics._cache) == 3
    with torch.no_grad():
        fresh = lyrics.backbone(input_ids=ids, attention_mask=mask.long()).last_hidden_state
    assert torch.allclose(first[mask], fresh[mask], atol=1e-5)
    assert torch.allclose(again[0][mask[2]], fresh[2][mask[2]], atol=1e-5)
    assert not first[~mask].any()


def test_frozen_states_past_the_memory_cap_are_recomputed_not_kept(monkeypatch):
    import model.encoders as encoders

    monkeypatch.setattr(encoders, "FROZEN_CACHE_BYTES", 1)  # the cap itself, not a stand-in for a real part
    cfg = ModelConfig(encoder="lyrics", lyrics_encoder="minilm", d_model=16, layers=1, heads=2, freeze_pretrained=True)
    lyrics = MultiTaskNet(cfg, N_CLASSES, None, None).encoder.lyrics
    ids, mask = lyrics.tokenize(["la donna è mobile", "sì", "sì"], 48, "cpu")
    states = lyrics._frozen_states(ids, mask)
    assert lyrics._cache == {} and lyrics._cache_bytes == 0
    with torch.no_grad():
        fresh = lyrics.backbone(input_ids=ids, attention_mask=mask.long()).last_hidden_state
    assert torch.allclose(states[mask], fresh[mask], atol=1e-5)


def test_tuned_whisper_blocks_learn_and_ignore_padding():
    """Whisper's top block (bundled weights) inside the net: gradients reach it, its weights are the
    pretrained group, and a padded clip gets the same logits as the clip alone."""
    cfg = ModelConfig(
        encoder="audio", audio_encoder="whisper", whisper_tune_layers=1, variant="coattn", d_model=16, layers=1, heads=2, dropout=0.0
    )
    net = MultiTaskNet(cfg, N_CLASSES, 512, None)
    pretrained = {id(p) for p in net.encoder.pretrained()}
    block = net.encoder.audio.blocks[0]
    assert {id(p) for p in block.parameters()} <= pretrained
    assert not {id(p) for p in net.heads.parameters()} & pretrained
    audio, mask = _batch(512)
    _check(net, audio, mask)
    assert block.mlp[0].weight.grad.abs().sum() > 0
    net.eval()
    with torch.no_grad():
        padded = net(audio, mask, TEXTS)
        alone = net(audio[1:2, :20], mask[1:2, :20], TEXTS[1:2])
    for task in N_CLASSES:
        torch.testing.assert_close(padded[task][1], alone[task][0], atol=1e-5, rtol=1e-4)


def test_frame_pool_averages_real_frames_only():
    import torch

    from model.encoders import pool_frames

    h = torch.arange(2 * 5 * 3, dtype=torch.float32).view(2, 5, 3)
    mask = torch.tensor([[True] * 5, [True, True, True, False, False]])
    pooled, m = pool_frames(h, mask, 2)
    assert pooled.shape == (2, 3, 3) and m.tolist() == [[True, True, True], [True, True, False]]
    torch.testing.assert_close(pooled[0, 2], h[0, 4])  # a group of one real frame (padding ignored)
    torch.testing.assert_close(pooled[1, 1], h[1, 2])  # frame 3 is padding
    torch.testing.assert_close(pooled[0, 0], h[0, :2].mean(0))

"""The offline model cache: assembled from the PyPI wheels, idempotent, and clear when a model is missing."""

from __future__ import annotations

import time

import numpy as np
import pytest

from pipeline import models_cache
from pipeline.models_cache import ModelNotFoundError, assemble_ct2, assemble_openai
from pipeline.transcribe import resolve_model
from pipeline.transcribe.convert import ct2_to_openai_state
from pipeline.transcribe.ct2_format import CT2FormatError, read_ct2_model


@pytest.fixture(scope="module")
def tiny_cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return root, assemble_ct2("tiny.en", root), assemble_openai("tiny.en", root)


def test_cache_is_assembled_once_then_untouched(tiny_cache):
    root, ct2, pt = tiny_cache
    assert (ct2 / "model.bin").stat().st_size == models_cache.bundled_source("tiny.en").bin_parts[0].stat().st_size
    before = ((ct2 / "model.bin").stat().st_mtime_ns, pt.stat().st_mtime_ns)
    t0 = time.perf_counter()
    assert assemble_ct2("tiny.en", root) == ct2 and assemble_openai("tiny.en", root) == pt
    assert time.perf_counter() - t0 < 2.0  # no re-copy, no re-conversion (seconds when it does)
    assert ((ct2 / "model.bin").stat().st_mtime_ns, pt.stat().st_mtime_ns) == before


def test_base_is_the_two_parts_concatenated(tmp_path):
    src = models_cache.bundled_source("base")
    folder = assemble_ct2("base", tmp_path)
    parts = [p.read_bytes() for p in src.bin_parts]
    assert (folder / "model.bin").read_bytes() == parts[0] + parts[1]
    variables, _, spec = read_ct2_model(folder / "model.bin")
    assert spec == "WhisperSpec" and variables["encoder/conv1/weight"].shape == (512, 80, 3)


def test_openai_state_holds_the_same_tensors(tiny_cache):
    _, ct2, _ = tiny_cache
    variables, _, _ = read_ct2_model(ct2 / "model.bin")
    dims, state, heads = ct2_to_openai_state(ct2)
    assert dims["n_audio_layer"] == 4 and dims["n_text_head"] == 6 and dims["n_vocab"] == 51864
    fused = variables["encoder/layer_2/self_attention/linear_0/weight"].astype(np.float32)
    d = dims["n_audio_state"]
    assert np.array_equal(state["encoder.blocks.2.attn.value.weight"], fused[2 * d :])
    assert "encoder.blocks.2.attn.key.bias" not in state  # openai-whisper's key has no bias
    assert heads and all(len(h) == 2 for h in heads)


def test_truncated_model_file_is_refused_by_name(tmp_path, tiny_cache):
    _, ct2, _ = tiny_cache
    broken = tmp_path / "model.bin"
    broken.write_bytes((ct2 / "model.bin").read_bytes()[:5000])
    with pytest.raises(CT2FormatError, match="truncated"):
        read_ct2_model(broken)


def test_missing_production_model_says_how_to_provide_it(tmp_path, monkeypatch):
    monkeypatch.setenv("CANTOLAB_MODEL_CACHE", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.cache/whisper, no Hugging Face cache
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for backend in ("faster-whisper", "openai-whisper"):
        with pytest.raises(ModelNotFoundError) as err:
            resolve_model("large-v3", backend)
        message = str(err.value)
        assert "large-v3" in message and "--model base" in message and "tiny.en" in message
        assert str(tmp_path / "ct2" / "large-v3") in message


def test_model_by_path(tiny_cache):
    _, ct2, pt = tiny_cache
    assert resolve_model(str(ct2), "faster-whisper") == ct2
    assert resolve_model(str(pt), "openai-whisper") == pt
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        resolve_model("/nowhere/whisper-large-v3", "faster-whisper")
    with pytest.raises(ModelNotFoundError, match="CTranslate2 model"):
        resolve_model(str(ct2), "openai-whisper")


def test_cli_entry_point_is_quiet_and_idempotent(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CANTOLAB_MODEL_CACHE", str(tmp_path))
    assert models_cache.main(["--quiet"]) == 0
    assert models_cache.main(["--quiet"]) == 0
    assert capsys.readouterr().out == ""
    assert sorted(p.name for p in (tmp_path / "ct2").iterdir()) == ["base", "tiny.en"]
    assert sorted(p.name for p in (tmp_path / "openai").glob("*.pt")) == ["base.pt", "tiny.en.pt"]

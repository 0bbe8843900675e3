"""CTranslate2 Whisper tensors → an openai-whisper checkpoint (same weights, float32).

CTranslate2 fuses the attention projections (self-attention q|k|v, cross-attention k|v) and names
layers `layer_i/...`; openai-whisper keeps them apart as `blocks.i.attn.{query,key,value,out}`.
The key projection has no bias in openai-whisper (CTranslate2 stores zeros there).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pipeline.fsio import atomic_writer
from pipeline.transcribe.ct2_format import CT2FormatError, read_ct2_model


def _count_layers(variables: dict, prefix: str) -> int:
    n = 0
    while f"{prefix}/layer_{n}/ffn/linear_0/weight" in variables:
        n += 1
    return n


def ct2_to_openai_state(folder: str | Path) -> tuple[dict, dict[str, np.ndarray], list[list[int]]]:
    """(dims, state dict of float32 arrays, alignment heads) for openai-whisper's `Whisper`."""
    folder = Path(folder)
    v, aliases, spec = read_ct2_model(folder / "model.bin")
    if spec != "WhisperSpec":
        raise CT2FormatError(f"{folder}: a {spec}, not a Whisper model")
    f32 = lambda name: np.asarray(v[aliases.get(name, name)], dtype=np.float32)  # noqa: E731
    d_audio = v["encoder/conv1/weight"].shape[0]
    d_text = v["decoder/embeddings/weight"].shape[1]
    dims = {
        "n_mels": int(v["encoder/conv1/weight"].shape[1]),
        "n_audio_ctx": int(v["encoder/position_encodings/encodings"].shape[0]),
        "n_audio_state": int(d_audio),
        "n_audio_head": int(v["encoder/num_heads"]),
        "n_audio_layer": _count_layers(v, "encoder"),
        "n_vocab": int(v["decoder/embeddings/weight"].shape[0]),
        "n_text_ctx": int(v["decoder/position_encodings/encodings"].shape[0]),
        "n_text_state": int(d_text),
        "n_text_head": int(v["decoder/num_heads"]),
        "n_text_layer": _count_layers(v, "decoder"),
    }
    sd: dict[str, np.ndarray] = {}

    def linear(dst: str, src: str, rows: slice | None = None, bias: bool = True) -> None:
        w, b = f32(f"{src}/weight"), f32(f"{src}/bias")
        sd[f"{dst}.weight"] = w[rows] if rows is not None else w
        if bias:
            sd[f"{dst}.bias"] = b[rows] if rows is not None else b

    def norm(dst: str, src: str) -> None:
        sd[f"{dst}.weight"], sd[f"{dst}.bias"] = f32(f"{src}/gamma"), f32(f"{src}/beta")

    def qkv(dst: str, src: str, d: int) -> None:
        linear(f"{dst}.query", src, slice(0, d))
        linear(f"{dst}.key", src, slice(d, 2 * d), bias=False)
        linear(f"{dst}.value", src, slice(2 * d, 3 * d))

    def mlp(dst: str, src: str) -> None:
        norm(f"{dst}.mlp_ln", f"{src}/ffn/layer_norm")
        linear(f"{dst}.mlp.0", f"{src}/ffn/linear_0")
        linear(f"{dst}.mlp.2", f"{src}/ffn/linear_1")

    for conv in ("conv1", "conv2"):
        sd[f"encoder.{conv}.weight"] = f32(f"encoder/{conv}/weight")
        sd[f"encoder.{conv}.bias"] = f32(f"encoder/{conv}/bias")
    sd["encoder.positional_embedding"] = f32("encoder/position_encodings/encodings")
    for i in range(dims["n_audio_layer"]):
        dst, src = f"encoder.blocks.{i}", f"encoder/layer_{i}"
        norm(f"{dst}.attn_ln", f"{src}/self_attention/layer_norm")
        qkv(f"{dst}.attn", f"{src}/self_attention/linear_0", d_audio)
        linear(f"{dst}.attn.out", f"{src}/self_attention/linear_1")
        mlp(dst, src)
    norm("encoder.ln_post", "encoder/layer_norm")

    sd["decoder.token_embedding.weight"] = f32("decoder/embeddings/weight")
    sd["decoder.positional_embedding"] = f32("decoder/position_encodings/encodings")
    for i in range(dims["n_text_layer"]):
        dst, src = f"decoder.blocks.{i}", f"decoder/layer_{i}"
        norm(f"{dst}.attn_ln", f"{src}/self_attention/layer_norm")
        qkv(f"{dst}.attn", f"{src}/self_attention/linear_0", d_text)
        linear(f"{dst}.attn.out", f"{src}/self_attention/linear_1")
        norm(f"{dst}.cross_attn_ln", f"{src}/attention/layer_norm")
        linear(f"{dst}.cross_attn.query", f"{src}/attention/linear_0")
        linear(f"{dst}.cross_attn.key", f"{src}/attention/linear_1", slice(0, d_text), bias=False)
        linear(f"{dst}.cross_attn.value", f"{src}/attention/linear_1", slice(d_text, 2 * d_text))
        linear(f"{dst}.cross_attn.out", f"{src}/attention/linear_2")
        mlp(dst, src)
    norm("decoder.ln", "decoder/layer_norm")

    config = json.loads((folder / "config.json").read_text()) if (folder / "config.json").exists() else {}
    return dims, sd, config.get("alignment_heads", [])


def ct2_to_openai_checkpoint(folder: str | Path, dest: str | Path) -> Path:
    """Write `{"dims", "model_state_dict", "alignment_heads"}` the way openai-whisper saves models."""
    import torch

    dims, sd, heads = ct2_to_openai_state(folder)
    checkpoint = {
        "dims": dims,
        "model_state_dict": {k: torch.from_numpy(np.ascontiguousarray(a)) for k, a in sd.items()},
        "alignment_heads": heads,
    }
    dest = Path(dest)
    with atomic_writer(dest, "wb") as fh:
        torch.save(checkpoint, fh)
    return dest

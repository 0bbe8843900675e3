"""Read a CTranslate2 `model.bin` into numpy arrays.

The layout is simple and versioned (ctranslate2/specs/model_spec.py `_serialize`): a binary
version, the spec name, a revision, then (name, shape, dtype, bytes) per variable, then aliases.
Reading it lets the openai-whisper backend run the very tensors faster-whisper runs.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from pipeline.errors import InputError

# Order of CTranslate2's DataType enum (include/ctranslate2/types.h).
_DTYPES = (np.float32, np.int8, np.int16, np.int32, np.float16, None)  # None: bfloat16 (unsupported here)


class CT2FormatError(InputError):
    """A model.bin that is not a CTranslate2 model this reader understands."""


def read_ct2_model(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, str], str]:
    """Variables, aliases and the spec name of a CTranslate2 model file."""
    data = Path(path).read_bytes()
    pos = 0

    def take(fmt: str):
        nonlocal pos
        size = struct.calcsize(fmt)
        if pos + size > len(data):
            raise CT2FormatError(f"{path}: truncated at byte {pos}")
        values = struct.unpack_from(fmt, data, pos)
        pos += size
        return values[0] if len(values) == 1 else values

    def string() -> str:
        nonlocal pos
        n = take("<H")
        text = data[pos : pos + n - 1].decode("utf-8")
        pos += n
        return text

    version = take("<I")
    if version < 5:
        raise CT2FormatError(f"{path}: CTranslate2 binary version {version} is too old (need >= 5)")
    spec = string()
    take("<I")  # revision
    variables: dict[str, np.ndarray] = {}
    for _ in range(take("<I")):
        name = string()
        rank = take("<B")
        shape = tuple(take("<I") for _ in range(rank))
        dtype_id = take("<B")
        nbytes = take("<I")
        dtype = _DTYPES[dtype_id] if dtype_id < len(_DTYPES) else None
        if dtype is None:
            raise CT2FormatError(f"{path}: variable {name} has unsupported dtype id {dtype_id}")
        if pos + nbytes > len(data):
            raise CT2FormatError(f"{path}: truncated inside variable {name} (file is {len(data)} bytes)")
        variables[name] = np.frombuffer(data, dtype=dtype, count=nbytes // np.dtype(dtype).itemsize, offset=pos).reshape(shape)
        pos += nbytes
    aliases = {}
    if pos < len(data):
        for _ in range(take("<I")):
            alias = string()
            aliases[alias] = string()
    return variables, aliases, spec

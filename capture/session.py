"""A session's takes on disk: numbering per song, the engineer's verdict, listing, finding one.

Everything here reads and writes the take manifests (`pipeline.manifest`); nothing else is kept, so
the folder stays the single source of truth (a session can be resumed from another terminal).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from pipeline.errors import InputError
from pipeline.manifest import TakeManifest, manifest_path, read_manifest, write_manifest


def session_takes(session_dir: Path) -> list[tuple[Path, TakeManifest | None, str]]:
    """(wav, manifest or None, problem) for every take in the folder, oldest first (ids sort by time)."""
    out = []
    for wav in sorted(Path(session_dir).glob("*.wav")):
        if wav.name.startswith("."):
            continue
        mpath = manifest_path(wav)
        if not mpath.exists():
            out.append((wav, None, "no manifest (run `cantolab capture recover`)"))
            continue
        try:
            out.append((wav, read_manifest(mpath), ""))
        except InputError as exc:
            out.append((wav, None, str(exc)))
    return out


def next_take_number(session_dir: Path, song: str) -> int:
    """1 + the highest take number of `song` in the session (discarded takes count: numbers stay unique)."""
    numbers = [m.take_number or 0 for _, m, _ in session_takes(session_dir) if m is not None and m.song == song]
    return max(numbers, default=0) + 1


def set_verdict(wav: Path, *, discarded: bool, rating: int | None = None, comment: str = "") -> TakeManifest:
    """The engineer's keep/discard, rating (1–5) and note, written into the take's manifest."""
    if rating is not None and not 1 <= rating <= 5:
        raise InputError(f"rating {rating} is outside 1–5")
    mpath = manifest_path(wav)
    manifest = replace(read_manifest(mpath), discarded=discarded, rating=rating, comment=comment)
    write_manifest(mpath, manifest)
    return manifest


def find_take(recordings: Path, spec: str) -> Path:
    """A take's WAV from a path, a full take id, or a unique start of one (searched in every session)."""
    path = Path(spec)
    if path.suffix.lower() == ".wav" and path.is_file():
        return path
    matches = sorted(w for w in Path(recordings).glob("*/*.wav") if w.stem == spec or w.stem.startswith(spec))
    exact = [w for w in matches if w.stem == spec]
    if exact:
        return exact[0]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise InputError(f"no take {spec!r} under {recordings} (`cantolab capture takes SESSION` lists them)")
    raise InputError(f"{spec!r} matches {len(matches)} takes ({', '.join(w.stem for w in matches[:4])}…): give more of the id")

"""Transcription speed and accuracy: faster-whisper vs openai-whisper on the same `base` weights.

Over the GTSinger clips of CANTOLAB_DATA (language given from the labels, as the ingest flow does
from manifests): each backend's real-time factor (compute seconds per audio second; same beam
size, same threads, clips interleaved so both see the same machine load) and error rates against
the reference lyrics by language (WER for space-separated languages, CER for all; ZH/JA/KO by
CER only). Then end-to-end ingest throughput: the Prefect ingest flow over the same clips into a
fresh dataset, hours of audio per wall-clock hour.
By default the first 3 clips of each language (27 clips, ~10 min on a quiet 2-core machine);
CANTOLAB_BENCH_PER_LANGUAGE=0 runs all 98.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections import defaultdict

from benchmarks.common import write_result
from pipeline.data import read_labels
from pipeline.records import prepare_take
from pipeline.transcribe import TranscribeOptions, load_transcriber, review
from pipeline.transcribe.quality import corpus_rates

MODEL = "base"
BEAM = 5
THREADS = 2
BACKENDS = ("faster-whisper", "openai-whisper")


def _transcribe_all(rows) -> dict:
    transcribers = {b: load_transcriber(MODEL, b, threads=THREADS) for b in BACKENDS}
    per = {b: {"compute_s": 0.0, "pairs": defaultdict(list), "clips": []} for b in BACKENDS}
    audio_s = 0.0
    for i, row in enumerate(rows):
        prepared = prepare_take(row["abs_path"])
        audio_s += prepared.seconds
        opts = TranscribeOptions(language=row["language"].lower(), beam_size=BEAM)
        order = BACKENDS if i % 2 == 0 else BACKENDS[::-1]
        for backend in order:
            t0 = time.perf_counter()
            result = transcribers[backend].transcribe(prepared.whisper_input, opts)
            spent = time.perf_counter() - t0
            review(result, prepared.whisper_input)
            per[backend]["compute_s"] += spent
            per[backend]["pairs"][row["language"]].append((result.text, row["lyrics"]))
            per[backend]["clips"].append({"path": row["path"], "seconds": spent, "text": result.text})
        print(
            f"  [{i + 1}/{len(rows)}] {row['path']}: " + ", ".join(f"{b} {per[b]['clips'][-1]['seconds']:.1f}s" for b in BACKENDS),
            flush=True,
        )
    out = {}
    for backend in BACKENDS:
        pairs = per[backend]["pairs"]
        by_lang = {lang: {"clips": len(p), **corpus_rates(p, lang)} for lang, p in sorted(pairs.items())}
        out[backend] = {
            "compute_seconds": round(per[backend]["compute_s"], 2),
            "real_time_factor": round(per[backend]["compute_s"] / audio_s, 4),
            "by_language": by_lang,
            "cer_all": corpus_rates([pp for p in pairs.values() for pp in p], "zh")["cer"],  # chars, spaces removed
            "mean_primary_error_over_languages": statistics.mean(v["primary"] for v in by_lang.values()),
        }
    out["audio_seconds"] = round(audio_s, 2)
    return out


def _ingest_throughput(rows) -> dict:
    import csv

    from flows.ingest import ingest_flow

    with tempfile.TemporaryDirectory() as tmp:
        csv_path = os.path.join(tmp, "import.csv")
        fields = ["path", "singer", "song", "language", "style", "emotion"]
        with open(csv_path, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=fields)
            w.writeheader()
            for r in rows:
                w.writerow({k: r.get(k) for k in fields})
        root = rows[0]["abs_path"][: -len(rows[0]["path"])]  # the set's folder; CSV paths are relative to it
        t0 = time.perf_counter()
        report = ingest_flow(root, os.path.join(tmp, "dataset"), csv_path, {"model": MODEL, "threads": THREADS})
        wall = time.perf_counter() - t0
    return {
        "takes": report["ingested"],
        "rejected": report["rejected"],
        "audio_seconds": round(report["seconds"], 2),
        "wall_seconds": round(wall, 2),
        "audio_hours_per_hour": round(report["seconds"] / wall, 3),
        "note": "includes starting Prefect's temporary local server (~10 s) and model load",
    }


def main() -> dict:
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    table = read_labels("gtsinger")
    per_language = int(os.environ.get("CANTOLAB_BENCH_PER_LANGUAGE", "3"))
    if per_language > 0:
        table = table.groupby("language", sort=False).head(per_language)
    rows = table.to_dict("records")
    backends = _transcribe_all(rows)
    speedup = backends["openai-whisper"]["real_time_factor"] / backends["faster-whisper"]["real_time_factor"]
    result = {
        "model": MODEL,
        "beam_size": BEAM,
        "threads": THREADS,
        "clips": len(rows),
        "load_average_at_end": os.getloadavg(),
        "faster_whisper_compute_type": "int8",
        "openai_whisper_precision": "float32",
        **backends,
        "speedup_faster_over_openai": round(speedup, 2),
        "faster_at_least_3x": speedup >= 3.0,
        "faster_error_not_worse": backends["faster-whisper"]["cer_all"] <= backends["openai-whisper"]["cer_all"] + 1e-9,
        "ingest": _ingest_throughput(rows),
    }
    return write_result("transcribe", result)


if __name__ == "__main__":
    import json

    print(json.dumps(main(), indent=2)[:3000])

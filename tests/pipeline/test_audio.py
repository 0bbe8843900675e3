"""Loading and checking real and broken files: each problem is a clear error naming the file."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import soundfile as sf

from pipeline.audio import AudioError, decode_audio_bytes, encode_flac, load_audio, sha256_file, write_audio
from pipeline.config import AudioConfig
from pipeline.synth import SungNote, sung_note


def test_real_24bit_gtsinger_clip_loads_bit_exact(gtsinger):
    row = gtsinger[gtsinger["subtype"] == "PCM_24"].iloc[0]
    clip = load_audio(row["abs_path"])
    raw, rate = sf.read(row["abs_path"], dtype="int32")
    assert clip.sample_rate == rate == 48_000
    assert clip.subtype == "PCM_24" and clip.channels == 1
    # 24-bit codes survive float32 exactly (24-bit mantissa).
    assert np.array_equal(np.round(clip.samples.astype(np.float64) * 2**31).astype(np.int64), raw.astype(np.int64))
    assert clip.sha256 == sha256_file(row["abs_path"])
    assert abs(clip.seconds - row["seconds"]) < 0.01


def test_real_16bit_ravdess_clip_loads(ravdess):
    row = ravdess.iloc[0]
    clip = load_audio(row["abs_path"])
    assert clip.subtype == "PCM_16" and clip.sample_rate == 48_000
    assert clip.seconds == pytest.approx(2.39, abs=0.01)


def test_every_reference_clip_passes_the_checks(gtsinger, ravdess):
    for path in list(gtsinger["abs_path"]) + list(ravdess["abs_path"][:50]):
        clip = load_audio(path)
        assert clip.frames > 0 and np.isfinite(clip.samples).all()


@pytest.mark.parametrize(
    "make, problem",
    [
        (lambda p: p.write_bytes(b""), "empty file"),
        (lambda p: p.write_bytes(np.random.default_rng(0).bytes(4096)), "unreadable or not audio"),
        (lambda p: p.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt "), "unreadable or not audio"),
    ],
    ids=["empty", "random-bytes", "truncated-header"],
)
def test_broken_files_are_refused_by_name(tmp_path, make, problem):
    path = tmp_path / "broken.wav"
    make(path)
    with pytest.raises(AudioError, match=problem) as err:
        load_audio(path)
    assert err.value.path == str(path) and str(path) in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(AudioError, match="file not found"):
        load_audio(tmp_path / "nope.flac")


def _wav_claiming_more_frames(path, frames_held: int, frames_claimed: int) -> None:
    data = (np.sin(np.arange(frames_held) / 10) * 20000).astype("<i2").tobytes()
    claimed = frames_claimed * 2
    header = b"RIFF" + struct.pack("<I", 36 + claimed) + b"WAVE"
    header += b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, 48000, 96000, 2, 16)
    header += b"data" + struct.pack("<I", claimed)
    path.write_bytes(header + data)


def test_wav_claiming_more_frames_than_it_holds_is_truncated(tmp_path):
    path = tmp_path / "short.wav"
    _wav_claiming_more_frames(path, frames_held=4800, frames_claimed=48000)
    with pytest.raises(AudioError, match="truncated"):
        load_audio(path)


def test_zero_frames(tmp_path):
    path = tmp_path / "zero.wav"
    sf.write(path, np.zeros(0, dtype=np.float32), 48000, subtype="PCM_24")
    with pytest.raises(AudioError, match="zero-length"):
        load_audio(path)


def test_nan_samples(tmp_path):
    path = tmp_path / "nan.wav"
    x = np.sin(np.arange(4800) / 5).astype(np.float32)
    x[100] = np.nan
    x[200] = np.inf
    sf.write(path, x, 48000, subtype="FLOAT")
    with pytest.raises(AudioError, match="2 NaN/inf samples"):
        load_audio(path)


def test_digital_silence(tmp_path):
    path = tmp_path / "silence.wav"
    sf.write(path, np.zeros(48000, dtype=np.float32), 48000, subtype="PCM_24")
    with pytest.raises(AudioError, match="digital silence"):
        load_audio(path)


def test_sample_rate_refused_or_resampled(tmp_path):
    path = tmp_path / "cd.wav"
    sf.write(path, sung_note(SungNote(seconds=1.0), 44100), 44100, subtype="PCM_16")
    with pytest.raises(AudioError, match="sample rate 44100 Hz, expected 48000 Hz"):
        load_audio(path, AudioConfig(on_rate_mismatch="refuse"))
    clip = load_audio(path, AudioConfig(on_rate_mismatch="resample"))
    assert clip.sample_rate == 48000 and clip.resampled_from == 44100
    assert abs(clip.frames - 48000) <= 1


def test_channel_policies(tmp_path):
    path = tmp_path / "stereo.wav"
    left = sung_note(SungNote(seconds=0.5, f0_hz=200), 48000)
    right = 0.5 * sung_note(SungNote(seconds=0.5, f0_hz=300), 48000)
    sf.write(path, np.stack([left, right], axis=1), 48000, subtype="PCM_24")
    assert load_audio(path, AudioConfig(channels="downmix")).channels == 2
    np.testing.assert_allclose(load_audio(path, AudioConfig(channels="first")).samples, left, atol=2**-22)
    np.testing.assert_allclose(load_audio(path, AudioConfig(channels=1)).samples, right, atol=2**-22)
    np.testing.assert_allclose(load_audio(path).samples, (left + right) / 2, atol=2**-22)
    with pytest.raises(AudioError, match="channel 5 requested but the file has 2 channels"):
        load_audio(path, AudioConfig(channels=5))


def test_clipping_reported_and_refused_over_limit(tmp_path):
    path = tmp_path / "hot.wav"
    x = 1.5 * np.sin(2 * np.pi * 220 * np.arange(48000) / 48000)
    sf.write(path, np.clip(x, -1, 1), 48000, subtype="PCM_24")
    with pytest.raises(AudioError, match=r"clipped: \d+\.\d+% of samples at full scale"):
        load_audio(path)
    clip = load_audio(path, AudioConfig(max_clipping_fraction=0.9))
    assert 0.3 < clip.clipping_fraction < 0.7


def test_too_long(tmp_path):
    path = tmp_path / "long.wav"
    sf.write(path, sung_note(SungNote(seconds=2.0)), 48000, subtype="PCM_16")
    with pytest.raises(AudioError, match="too long: 2.0 s exceeds the configured maximum of 1.0 s"):
        load_audio(path, AudioConfig(max_seconds=1.0))


def test_write_and_flac_round_trip_24bit(tmp_path):
    x = sung_note(SungNote(seconds=0.5))
    quantized = np.round(x * 2**23) / 2**23
    for name in ("a.wav", "a.flac"):
        path = write_audio(tmp_path / name, quantized, 48000, "PCM_24")
        info = sf.info(path)
        assert (info.samplerate, info.subtype, info.channels) == (48000, "PCM_24", 1)
        np.testing.assert_array_equal(sf.read(path, dtype="float64")[0], quantized)
    decoded, rate = decode_audio_bytes(encode_flac(quantized))
    assert rate == 48000
    np.testing.assert_array_equal(decoded.astype(np.float64), quantized)
    assert not list(tmp_path.glob(".*.tmp")), "atomic writes leave no temporary files"


def test_truncated_real_flac_is_refused(tmp_path, gtsinger):
    data = open(gtsinger.iloc[0]["abs_path"], "rb").read()
    path = tmp_path / "cut.flac"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(AudioError, match="truncated or corrupt"):
        load_audio(path)


def _peak_rss_mb(code: str) -> tuple[int, str, float]:
    from tests.peak_rss import peak_rss_mb

    return peak_rss_mb(code)


def test_two_hour_wav_refused_from_its_header_with_bounded_memory(tmp_path):
    """Issue 14.4: a 2-hour take was decoded whole (2.06 GB) before the 900-s limit refused it."""
    from pipeline.synth import long_take_wav

    path = long_take_wav(tmp_path / "two-hours.wav", 2 * 3600)
    code = (
        "from pipeline.audio import AudioError\n"
        "from pipeline.records import prepare_take\n"
        "try:\n"
        f"    prepare_take({str(path)!r})\n"
        "except AudioError as exc:\n"
        "    print(exc)\n"
    )
    rc, out, peak = _peak_rss_mb(code)
    assert rc == 0, out
    assert "too long: 7200.0 s exceeds the configured maximum of 900.0 s" in out and str(path) in out
    assert peak < 400, f"peak RSS {peak:.0f} MB"


def test_long_file_decodes_in_blocks_with_memory_of_one_mono_copy(tmp_path):
    """Within the limit, an 8-channel file costs about its mono signal, not all channels as float32."""
    seconds, channels = 120, 8
    path = tmp_path / "multichannel.wav"
    with sf.SoundFile(path, "w", 48000, channels, "PCM_16") as fh:
        block = np.tile(sung_note(SungNote(seconds=1.0))[:, None], (1, channels))
        for _ in range(seconds):
            fh.write(block)
    code = (
        "import resource\n"
        "from pipeline.audio import load_audio\n"
        "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\n"
        f"clip = load_audio({str(path)!r})\n"
        "print(clip.seconds, base)\n"
    )
    rc, out, peak = _peak_rss_mb(code)
    assert rc == 0, out
    seconds_read, base = map(float, out.split())
    assert seconds_read == seconds
    mono_mb, whole_mb = seconds * 48000 * 4 / 2**20, seconds * 48000 * channels * 4 / 2**20  # 22 MB vs 176 MB
    assert peak - base < mono_mb + 60 < whole_mb, f"decoding added {peak - base:.0f} MB"

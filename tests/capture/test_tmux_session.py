"""The recorder in a real terminal: tmux (120×40) running `cantolab capture …` on the paced device.

What the engineer sees is asserted from `tmux capture-pane`: no key echo or stale meter panels
after a key press, Enter or Ctrl-C; the clip light and the CLIPPED summary with exit code 3; a
session of three takes (one discarded, one rated) whose `takes` listing matches the manifests.
Each tmux server has its own socket, so parallel test runs never share one.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from capture import virtual_device as vd
from capture.levels import CLIP_CODE
from tests.capture.conftest import REPO, Device, _env

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (Debian tmux)")


class Tmux:
    def __init__(self, env: dict[str, str], cwd: Path):
        self.socket = f"cantolab-test-{uuid.uuid4().hex[:8]}"
        exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items() if k.startswith(("ALSA_", "JACK_", "PYTHONPATH", "CANTOLAB_")))
        self._tmux(
            "new-session",
            "-d",
            "-s",
            "t",
            "-x",
            "120",
            "-y",
            "40",
            f"env -i HOME=/root TERM=xterm-256color PATH={shlex.quote(env['PATH'])} {exports} bash --norc --noprofile",
        )
        self.send(f"cd {shlex.quote(str(cwd))} && export PS1='$ ' && clear", "Enter")
        deadline = time.monotonic() + 10
        while self.screen().strip() != "$" and time.monotonic() < deadline:  # typed-ahead keys would echo twice
            time.sleep(0.05)

    def _tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], check=True, capture_output=True, text=True).stdout

    def send(self, *keys: str) -> None:
        self._tmux("send-keys", "-t", "t", *keys)

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p", "-t", "t", "-S", "-200")

    def wait_for(self, text: str, timeout: float = 30.0, count: int = 1) -> str:
        """The screen once `text` is on it `count` times (prompts repeat take after take)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.screen()
            if screen.count(text) >= count:
                return screen
            time.sleep(0.1)
        raise AssertionError(f"{text!r} did not appear within {timeout} s; the screen:\n{self.screen()}")

    def kill(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True)


def _cli(*args: str) -> str:
    return f"python -m flows.cli capture {' '.join(shlex.quote(a) for a in args)}"


@pytest.fixture
def term(tmp_path, jack48, studio_source):
    def start(samples: np.ndarray | None = None) -> Tmux:
        infile = vd.write_f32_infile(tmp_path / "src.f32", studio_source.samples if samples is None else samples)
        config = vd.write_alsa_config(tmp_path, infile, paced=True)
        env = Device(_env(config, jack48.env), config, studio_source).env
        env["PATH"] = f"{Path(REPO, '.venv/bin')}:{env['PATH']}"
        env["CANTOLAB_RECORDINGS"] = str(tmp_path / "REC")
        started.append(Tmux(env, REPO))
        return started[-1]

    started: list[Tmux] = []
    yield start
    for t in started:
        t.kill()


def _manifests(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


@pytest.mark.timeout(120)
def test_a_session_of_three_takes_one_discarded_one_rated(tmp_path, term):
    t = term()
    t.send(
        _cli(
            "session",
            "--session",
            "s01",
            "--singer",
            "ZH-Alto-1",
            "--song",
            "Moon",
            "--device",
            "virtual",
            "--microphone",
            "U87",
            "--min-free-minutes",
            "1",
        ),
        "Enter",
    )
    t.wait_for("Moon · take 1")
    # take 1: a stray key during the take (no echo), stopped with Enter, discarded
    t.send("Space")
    t.wait_for("● REC")
    time.sleep(1.5)
    t.send("x")
    time.sleep(0.5)
    t.send("Enter")
    t.wait_for("k keep · d discard")
    t.send("d")
    t.wait_for("rating 1–5")
    t.send("Enter")
    t.wait_for("add a note")
    t.send("Enter")
    t.wait_for("Moon · take 2")
    # take 2: stopped with Ctrl-C, kept, rated 4, with a note
    t.send("Space")
    t.wait_for("● REC", count=1)
    time.sleep(1.5)
    t.send("C-c")
    t.wait_for("k keep · d discard", count=2)
    t.send("k")
    t.wait_for("rating 1–5", count=2)
    t.send("4")
    t.wait_for("add a note", count=2)
    t.send("n")
    t.wait_for("note:")
    t.send("late entry", "Enter")
    t.wait_for("Moon · take 3")
    # the song changes without restarting: its takes count from 1
    t.send("s")
    t.wait_for("song:")
    t.send("Sun", "Enter")
    t.wait_for("Sun · take 1")
    t.send("Space")
    t.wait_for("● REC")
    time.sleep(1.5)
    t.send("q")
    t.wait_for("k keep · d discard", count=3)
    t.send("k", "Enter", "Enter")
    t.wait_for("Sun · take 2")
    t.send("q")
    screen = t.wait_for("3 take(s) recorded, 2 kept")

    lines = screen.splitlines()
    assert "● REC" not in screen  # the live meter leaves nothing behind
    assert not any(line.strip() in ("x", "^C", "q", "d", "k", "4") or "^C" in line for line in lines), screen
    assert screen.count("take summary") == 3 and "discarded (kept on disk)" in screen and "kept ★★★★ — late entry" in screen

    ms = _manifests(tmp_path / "REC" / "s01")
    by_order = sorted(ms, key=lambda m: m["take_id"])
    assert [(m["song"], m["take_number"], m["discarded"], m["rating"], m["comment"]) for m in by_order] == [
        ("Moon", 1, True, None, ""),
        ("Moon", 2, False, 4, "late entry"),
        ("Sun", 1, False, None, ""),
    ]
    assert [m["end_reason"] for m in by_order] == ["Enter", "Ctrl-C", "q"]
    assert all(m["status"] == "complete" and m["microphone"] == "U87" and m["frames"] > 48_000 for m in ms)

    t.send("clear", "Enter")
    t.send(_cli("takes", "s01"), "Enter")
    listing = t.wait_for("1 discarded")
    for m in ms:
        row = next(line for line in listing.splitlines() if m["take_id"] in line)  # the full id, never cut
        cells = [c.strip() for c in row.strip()[1:-1].split("│")]
        assert cells[0] == str(m["take_number"]) and cells[2] == m["song"]
        assert cells[3] == f"00:{m['seconds']:05.2f}" and cells[4] == f"{m['peak_dbfs']:.1f}"
        assert cells[5] == str(m["clipped_samples"]) and cells[6] == m["status"]
        assert cells[7] == ("discarded" if m["discarded"] else "kept") and cells[8] == "★" * (m["rating"] or 0)


@pytest.mark.timeout(90)
def test_a_clipped_take_lights_the_clip_light_and_exits_3(tmp_path, term, studio_source):
    hot = studio_source.samples[: 6 * 48_000].copy()
    hot[48_000:] = np.where(np.arange(hot.size - 48_000) % 100 < 5, CLIP_CODE, hot[48_000:])  # clipping from 1 s on
    t = term(hot)
    t.send(
        _cli(
            "record",
            "--session",
            "s01",
            "--singer",
            "ZH-Alto-1",
            "--song",
            "Hot",
            "--device",
            "virtual",
            "--seconds",
            "4",
            "--min-free-minutes",
            "1",
        )
        + '; echo "r""c=$?"',
        "Enter",
    )
    during = t.wait_for(" CLIP ", timeout=30)
    assert "clipped samples this take" in during
    screen = t.wait_for("rc=", timeout=30)
    assert "rc=3" in screen
    assert "CLIPPED:" in screen and "⚠ clipping at" not in screen  # one light, not a warning line per second
    [m] = _manifests(tmp_path / "REC" / "s01")
    assert m["status"] == "complete" and m["clipped_samples"] > 0
    assert f"CLIPPED: {m['clipped_samples']:,} samples" in screen


@pytest.mark.timeout(90)
def test_check_in_two_steps_waits_for_enter_between_them(term):
    rng = np.random.default_rng(5)
    noise = 10 ** (-72 / 20) * rng.standard_normal(int(1.2 * 48_000))  # the quiet room: -72 dBFS RMS
    tone = 10 ** (-12 / 20) * np.sin(2 * np.pi * 330 * np.arange(4 * 48_000) / 48_000)  # singing peaking at -12 dBFS
    x = np.concatenate([noise, tone])
    t = term((np.round(x * 2**23).astype(np.int64) << 8).astype(np.int32))
    t.send(_cli("check", "--device", "virtual", "--seconds", "1") + '; echo "r""c=$?"', "Enter")
    t.wait_for("press Enter, then sing")
    t.send("x")  # not Enter: nothing starts, nothing echoed
    time.sleep(0.2)
    t.send("Enter")
    screen = t.wait_for("rc=")
    text = " ".join(screen.split())
    assert "rc=0" in text and "level check: ready to record" in text, screen
    floor = float(text.split("noise floor ")[1].split(" dBFS")[0])
    peak = float(text.split("2 singing 1.0 s: peak ")[1].split(" dBFS")[0])
    assert abs(floor - -72.0) < 1.0 and abs(peak - -12.0) < 0.1, text
    assert not any(line.strip() == "x" for line in screen.splitlines())

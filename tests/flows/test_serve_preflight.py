"""`cantolab serve` checks its settings before registering anything and names every problem at once;
`--dry-run` shows the retrain's models folder (absolute) and leaves the sync out when asked."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from flows.cli import app
from pipeline.errors import USER_ERROR_EXIT


def _env(tmp_path: Path) -> dict[str, str]:
    return {
        "CANTOLAB_LS_SECRETS": str(tmp_path / "no-secrets.json"), "CANTOLAB_ROSTER": str(tmp_path / "no-roster.toml"),
        "CANTOLAB_LS_TOKEN": "", "CANTOLAB_LS_DOCUMENT_ROOT": "", "COLUMNS": "300",
    }  # fmt: skip


def test_every_missing_setting_in_one_message(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    args = [
        "serve",
        "-r",
        str(tmp_path),
        "-d",
        str(tmp_path / "ds"),
        "-m",
        str(tmp_path / "no-such-model"),
        "--models",
        str(blocked / "models"),
    ]
    result = CliRunner().invoke(app, args, env=_env(tmp_path))
    assert result.exit_code == USER_ERROR_EXIT, result.output
    text = " ".join(result.output.split())
    for problem in (
        "Whisper model:",
        f"models folder {blocked / 'models'}",
        "Label Studio token",
        "annotator roster",
        "Label Studio document root",
    ):
        assert problem in text, (problem, text)
    assert "cantolab-ingest" not in text  # nothing listed, nothing registered (no Prefect server was needed)
    dry = CliRunner().invoke(app, [*args, "--dry-run"], env=_env(tmp_path))  # lists them, and says what is missing
    dry_text = " ".join(dry.output.split())
    assert dry.exit_code == 0 and "cantolab-ingest" in dry_text and "Label Studio token" in dry_text, dry.output


def test_dry_run_shows_models_folder_and_no_sync(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = [
        "serve",
        "-r",
        "rec",
        "-d",
        "ds",
        "-m",
        "tiny.en",
        "--models",
        "models",
        "--no-annotation-sync",
        "--dry-run",
        "--timezone",
        "Europe/Paris",
    ]
    result = CliRunner().invoke(app, args, env=_env(tmp_path))
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert f"models folder {tmp_path / 'models'}" in text
    assert "ingest/cantolab-ingest" in text and "cantolab-retrain/cantolab-retrain" in text and "annotation-sync" not in text
    assert "0 3 * * * Europe/Paris" in text


def test_an_s3_models_folder_is_shown_and_its_bucket_checked(tmp_path, s3_env):
    """A real S3 store (SeaweedFS): the dry run shows the URL as the models folder; a bucket that
    does not exist is named among the problems (and refused when registering)."""
    base = ["serve", "-r", "rec", "-d", "ds", "-m", "tiny.en", "--no-annotation-sync"]
    env = _env(tmp_path) | s3_env
    ok = CliRunner().invoke(app, [*base, "--models", "s3://cantolab-test/models", "--dry-run"], env=env)
    text = " ".join(ok.output.split())
    assert ok.exit_code == 0 and "models folder s3://cantolab-test/models" in text and "cannot schedule" not in text, ok.output
    missing = CliRunner().invoke(app, [*base, "--models", "s3://no-such-bucket/models"], env=env)
    text = " ".join(missing.output.split())
    assert missing.exit_code == USER_ERROR_EXIT and "bucket 'no-such-bucket' does not exist" in text, missing.output
    other = CliRunner().invoke(app, [*base, "--models", "ftp://host/models", "--dry-run"], env=env)
    assert other.exit_code == USER_ERROR_EXIT and "a path or an s3:// URL" in " ".join(other.output.split()), other.output

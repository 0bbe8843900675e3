"""Run report: metrics JSON, report.md (tables beside the majority-class rate), PNG plots."""

from __future__ import annotations

from pathlib import Path

import matplotlib

from pipeline.fsio import atomic_write_text, atomic_writer

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from model.controls import language_only  # noqa: E402
from model.evaluate import fmt  # noqa: E402
from model.train import RunResult, make_batch, pick_device  # noqa: E402


def saved_model_score(run: RunResult) -> dict:
    """The saved network (the best seed's) on the test singers: mean macro-F1 over the tasks with test
    labels. This is the number promotion compares, and report.md shows it."""
    row = next(s for s in run.per_seed if s["seed"] == run.best_seed)
    tasks = {t: {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"], "n": m["n"]} for t, m in row.items() if isinstance(m, dict)}
    score = float(np.mean([m["macro_f1"] for m in tasks.values()])) if tasks else None
    return {"seed": run.best_seed, "score": score, "tasks": tasks, "metric": "mean test macro-F1 over tasks"}


def run_metrics(run: RunResult) -> dict:
    cfg = run.config
    return {
        "summary": run.summary,
        "saved_model": saved_model_score(run),
        "per_seed": run.per_seed,
        "best_seed": run.best_seed,
        "split": run.split.to_dict(),
        "split_notes": run.split.notes,
        "n_test_clips": len(run.test_examples),
        "feature_norm": cfg.feature_norm,
        "encoder": {
            "encoder": cfg.model.encoder,
            "audio": cfg.model.audio_encoder,
            "lyrics": cfg.model.lyrics_encoder,
            "variant": cfg.model.variant,
            "whisper_tune_layers": cfg.model.whisper_tune_layers,
        },
        "feature_seconds_per_computed_clip": run.feature_stats.seconds_per_computed_clip,
        "features": {
            "computed": run.feature_stats.computed,
            "cached": run.feature_stats.cached,
            "from_dataset": run.feature_stats.from_dataset,
        },
        "train_seconds_per_epoch": run.seconds_per_epoch,
        "controls": run.controls,
        "dataset": run.dataset,  # URI and each table's version: `cantolab train --dataset-version RUN` reads it again
    }


def plot_confusions(run: RunResult, folder: Path) -> list[Path]:
    paths = []
    for task, classes in run.maps.items():
        m = next((s[task] for s in run.per_seed if s["seed"] == run.best_seed and s.get(task)), None)
        if m is None:
            continue
        cm = np.asarray(m["confusion"])
        fig, ax = plt.subplots(figsize=(1.2 + 0.7 * len(classes), 1.0 + 0.7 * len(classes)))
        ax.imshow(cm, cmap="Blues")
        ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
        ax.set_yticks(range(len(classes)), classes)
        for i in range(len(classes)):
            for j in range(len(classes)):
                ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=8)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{task}: test singers, seed {run.best_seed}")
        fig.tight_layout()
        path = folder / f"confusion_{task}.png"
        with atomic_writer(path, "wb") as fh:
            fig.savefig(fh, format="png", dpi=100)
        plt.close(fig)
        paths.append(path)
    return paths


def plot_history(run: RunResult, folder: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for seed, hist in run.histories.items():
        ax.plot([h["epoch"] for h in hist], [h["train_loss"] for h in hist], label=f"train loss, seed {seed}")
        if hist and "val_macro_f1" in hist[0]:
            ax.plot([h["epoch"] for h in hist], [h["val_macro_f1"] for h in hist], "--", label=f"val macro-F1, seed {seed}")
    ax.set_xlabel("epoch")
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = folder / "training.png"
    with atomic_writer(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=100)
    plt.close(fig)
    return path


def plot_attention(run: RunResult, folder: Path, n_clips: int = 2) -> list[Path]:
    """Co-attention maps (style positions × emotion positions) for the first test clips."""
    if run.config.model.variant not in ("oneway", "coattn") or not run.test_examples:
        return []
    net = run.best.net
    device = pick_device(run.config.device)
    net.eval()
    paths = []
    feats = run.test_feats
    for i, ex in enumerate(run.test_examples[:n_clips]):
        f = [feats[i]] if feats is not None else None
        b = make_batch(f, [ex.transcript], {}, np.array([0]), run.config.max_frames, device, None)
        with torch.no_grad():
            _, extras = net(b.audio, b.mask, b.texts, return_extras=True)
        att = extras["style_to_emotion"][0].cpu().numpy()
        fig, ax = plt.subplots(figsize=(4.5, 4))
        ax.imshow(att, aspect="auto", cmap="viridis")
        ax.set_xlabel("emotion positions (keys)")
        ax.set_ylabel("style positions (queries)")
        ax.set_title(f"{ex.clip_id[:16]} ({ex.singer})", fontsize=8)
        fig.tight_layout()
        path = folder / f"attention_{i}.png"
        with atomic_writer(path, "wb") as fh:
            fig.savefig(fh, format="png", dpi=100)
        plt.close(fig)
        paths.append(path)
    return paths


def _whisper_detail(m) -> str:
    """Which Whisper, and whether its top blocks were tuned."""
    if m.audio_encoder != "whisper":
        return ""
    return f" {m.whisper_model}, top {m.whisper_tune_layers} block(s) tuned" if m.whisper_tune_layers else f" {m.whisper_model}, frozen"


def write_report(run: RunResult, folder: Path, metrics: dict) -> Path:
    cfg = run.config
    plots = folder / "plots"
    plots.mkdir(exist_ok=True)
    images = plot_confusions(run, plots) + [plot_history(run, plots)] + plot_attention(run, plots)
    lines = [
        f"# Training report: {folder.name}",
        "",
        f"Encoder `{cfg.model.encoder}` ("
        + ", ".join(
            ([f"audio `{cfg.model.audio_encoder}`" + _whisper_detail(cfg.model)] if "audio" in cfg.model.encoder else [])
            + ([f"lyrics `{cfg.model.lyrics_encoder}`"] if "lyrics" in cfg.model.encoder else [])
        )
        + "), "
        f"interaction `{cfg.model.variant}`, tasks {', '.join(cfg.tasks)}, loss `{cfg.loss}`, feature normalization "
        f"`{cfg.feature_norm}`{' (per singer, no labels used)' if cfg.feature_norm == 'singer' else ''}.",
        "",
        "## Singer-wise split (no singer in two parts)",
        "",
        f"- train ({len(run.split.train)}): {', '.join(run.split.train)}",
        f"- validation ({len(run.split.validation)}): {', '.join(run.split.validation) or '—'}",
        f"- test ({len(run.split.test)}): {', '.join(run.split.test)}",
        *[f"- note: {n}" for n in run.split.notes],
        "",
        f"## Test singers: mean ± std over {len(cfg.seeds)} seed(s) {list(cfg.seeds)}",
        "",
        "| task | n clips | accuracy | macro-F1 | rare-class recall | majority-class rate |",
        "|---|---|---|---|---|---|",
    ]
    for task, s in run.summary.items():
        lines.append(
            f"| {task} | {s['n']} | {fmt(s['accuracy'])} | {fmt(s['macro_f1'])} | {fmt(s['rare_class_recall'])} | {s['majority_rate']:.3f} |"
        )
    saved = metrics.get("saved_model") or saved_model_score(run)
    if saved["score"] is not None:
        lines += [
            "",
            f"Saved model (seed {saved['seed']}, best on validation): mean test macro-F1 over tasks **{saved['score']:.4f}** "
            + "("
            + ", ".join(f"{t} {m['macro_f1']:.4f}" for t, m in saved["tasks"].items())
            + "). "
            "The retrain flow compares champion and challenger with this number, on the same test singers.",
        ]
    missing = [t for t in cfg.tasks if t not in run.summary]
    if missing:
        lines += ["", f"No test clip carries a {', '.join(missing)} label, so that task has no test figure."]
    probe = run.controls.get("probe_baseline")
    if probe:
        lines += [
            "",
            "## Baseline: pooled features + logistic regression (same split)",
            "",
            "| task | accuracy | macro-F1 |",
            "|---|---|---|",
            *[f"| {t} | {m['accuracy']:.3f} | {m['macro_f1']:.3f} |" for t, m in probe.items()],
        ]
    ctrl = run.controls.get("language_only_style")
    if ctrl:
        lines += [
            "",
            "## Control: language alone → style",
            "",
            f"A logistic regression on the clip's language only: {ctrl['singer_wise_accuracy']:.3f} on these test singers, "
            f"{ctrl.get('clip_wise_accuracy') if ctrl.get('clip_wise_accuracy') is None else format(ctrl['clip_wise_accuracy'], '.3f')} "
            "clip-wise with singers shared. Where language determines style in the data (GTSinger), a high style score "
            "can be a language shortcut; it fails on a singer whose language came with the other style.",
        ]
    lines += ["", f"Features: {metrics['features']}; training {run.seconds_per_epoch:.2f} s/epoch.", "", "## Plots", ""]
    lines += [f"![{p.stem}](plots/{p.name})" for p in images]
    path = folder / "report.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def add_controls(run: RunResult) -> None:
    if run.probe_baseline:  # computed by train_run with the networks' own probe (model.probe): same clips, same fit
        run.controls["probe_baseline"] = run.probe_baseline
    if "style" in run.config.tasks:
        ctrl = language_only(run.train_examples, run.test_examples, "style")
        if ctrl:
            run.controls["language_only_style"] = ctrl

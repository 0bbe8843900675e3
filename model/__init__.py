"""The multi-task style + emotion model: shared encoder, co-interactive relation module, two heads.

Stages are plain functions over the Parquet dataset (`load_examples`), singer-wise splits
(`model.splits`), training (`model.train.train_run`), evaluation and reports; `flows/` wraps them.
"""

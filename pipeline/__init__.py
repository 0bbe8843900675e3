"""The shared core: audio I/O and checks, preprocessing, transcription, the Parquet dataset.

Imports nothing from capture, annotation, model or flows: every other package builds on it.
"""

__version__ = "0.1.0"

"""The shared core: audio I/O and checks, preprocessing, transcription, the Delta Lake dataset, the S3 object store.

Imports nothing from capture, annotation, model or flows: every other package builds on it.
"""

__version__ = "0.1.0"

"""One module per CLI area; each exposes `register(app)`."""

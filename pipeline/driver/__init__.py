"""The Ray driver: run a validated config (run), the Python API (extract, read), why a run stopped, Ray's logging, the extractor's memory."""

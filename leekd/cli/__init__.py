"""leekd's command-line faces: ``leekd`` (run.py, service.py), ``leek-shell``, ``leek-retry-failed``."""

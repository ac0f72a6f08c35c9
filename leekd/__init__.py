"""leekd: the leek daemon (server, queue, workers, database records)."""

from leek import __version__

__all__ = ["__version__"]

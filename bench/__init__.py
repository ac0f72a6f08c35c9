"""The benchmark behind ``scripts/bench``: leek beside its peers, on one machine, in one run.

Only the standard library is imported at package level: the client side of a round runs
inside each system's own Python (``bench.drive``), where leek itself is not installed.
"""

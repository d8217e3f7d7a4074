"""Benchmarks for scaler-workbench: the package's usage path against a hand-written floor.

Run ``python -m benchmarks.run`` (``make bench``) for the full size, or ``--smoke`` for a tiny
run. Modules:

``data``      deterministic synthetic provider records (not timed)
``floor``     a hand-vectorised pandas/numpy pipeline sharing no code with the package
``package``   the same computation through the package's public stage functions
``memory``    peak-RSS measurement per run (kernel high-water mark, reset before each run)
``sync``      records/s and request counts through HTTP against the sandbox
``stages``    per-stage CPU of the package path, for working on one stage (``--dump``, ``--prof``)
``run``       the command line: one timing worker runs floor and package interleaved; the table
"""

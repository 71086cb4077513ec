"""Micro-benchmarks, each ``python -m benchmarks.<name>`` from the repository root.

They are not part of the installed package: they read ``tests/vectors`` and use the
stand-ins of ``tests/fakes``. The benchmark operators run is ``keybroker bench``
(``broker/bench``); docs/performance.md has the method and the figures.
"""

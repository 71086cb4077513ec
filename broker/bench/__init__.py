"""``keybroker bench``: the floor, the load generator and the scenarios operators run
(docs/performance.md). The micro-benchmarks live outside the package, in ``benchmarks/``."""

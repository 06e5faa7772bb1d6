"""The benchmark harness (`make bench`), outside the product: see benchmarks/bench.py."""

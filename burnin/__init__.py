"""burnin: GPU burn-in and acceptance harness."""

__version__ = "0.1.0"

"""The adp-identity benchmark: what each provider operation costs in requests, and how long it takes on loopback.

It MEASURES and PRINTS; it never asserts speed (tests do not either). The one thing it judges is correctness: a
duplicate application user or a wrong role set found after any run makes it exit non-zero, because that is a bug,
not a slow day. Run it with ``.venv/bin/python -m bench`` (``make bench``); ``--quick`` runs tiny sizes.

Figures come from the emulator's request log (what reached the emulated Dataverse), and wall times from the
benchmark's own clock around each call. Everything runs on 127.0.0.1, so times are useful as ratios between
operations and approaches, not as Dataverse latency.
"""

from bench.report import BenchReport
from bench.run import BenchSettings, run_benchmark

__all__ = ["BenchReport", "BenchSettings", "run_benchmark"]

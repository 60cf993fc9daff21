"""Conformance cases: each module here defines ``CASES = {"<StageName>": lambda: (stage, table[, others])}``;
tests/test_conformance.py runs ``flowlearn.testing.check_stage`` on every case."""

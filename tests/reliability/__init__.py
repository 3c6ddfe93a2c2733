"""Fault-injection and bad-input tests (marker `reliability`); see docs/reliability.md."""

"""pipedrive-triggers: Pipedrive changes in, signed webhooks out, nothing lost on the way.

The top level holds what every layer may use (errors, redact, times, clock, logs, config,
metrics); the packages below it are the layers, each named for its role. docs/architecture.md
draws them and the one direction imports flow in; tests/unit/test_architecture.py enforces it.
"""

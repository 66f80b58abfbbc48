"""Talking to Pipedrive: the API client, the per-account rate limiter, what each call costs
in tokens, the daily budget, usage counts, lookups of related objects and custom fields.

May import the foundation, `model`, `db` (usage counts) and `metrics`; never the config file.
"""

"""The connector's actions (add deal, update stage or status, add activity, get deal or stage)
as a typed async client that validates, calls API v2 and maps the answer once.

May import `pipedrive`, `payloads` and the foundation; the CLI and Python users call it.
"""

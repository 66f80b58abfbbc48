"""What consumers receive: Pipedrive objects mapped onto the connector's shapes (`shapes`), and
the webhook envelope with its stable event id (`envelope`). Pure mapping, no I/O.

May import the foundation and `pipedrive` (for lookups' types).
"""

"""What an operator sees: the `status` snapshot, the admin listener (`/healthz`, `/readyz`,
`/metrics`, the admin page and its replay form) and the drift between config and database.

Reads what `db`, `polling` and `delivery` keep; may import any layer below `service`.
"""

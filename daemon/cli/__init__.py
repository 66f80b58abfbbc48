"""The `pipedrive-triggers` command line: `main` holds the group and the daemon's commands, one
module per command group (actions, outbox, subscriptions), and the plumbing they share.

The top layer: may import anything; nothing imports it but `daemon.__main__`.
"""

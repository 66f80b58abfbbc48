"""The running daemon: its lifecycle (open, poll, deliver, stop), the per-account clients,
SIGHUP reload, systemd supervision and notify, and the retention job.

Wires the layers below it together; imported only by `dev` (the demo) and `cli`.
"""

"""Serving HTTP inside the daemon: the admin listener (`status.listener`) and instant mode's
ingress (`instant.ingress`) bind their socket and run uvicorn the same way here, with bounds on
their connections (`connections`), so a client that connects and sends nothing cannot take
the file descriptors deliveries and the database need.

May import: the standard library, uvicorn and starlette's types, and `daemon.errors`; nothing
else of the daemon (both servers' own logic lives with them).
"""

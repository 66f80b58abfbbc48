"""Development tools, apart from the runtime: the Pipedrive sandbox, the webhook receiver, the
loopback server that serves both, and the `demo` that runs them with the daemon.

May import the runtime (the demo starts the service); the runtime never imports this package.
"""

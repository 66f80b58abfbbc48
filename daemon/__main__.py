"""`python -m daemon` is the same as the `pipedrive-triggers` command."""

from daemon.cli.main import main

main()

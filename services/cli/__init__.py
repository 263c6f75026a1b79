"""The `kalo` command, one module per command group (`services.cli.main` assembles them).

Importing this package imports nothing else: `kalo rules` starts without the services."""

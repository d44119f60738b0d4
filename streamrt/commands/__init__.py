"""Subcommands of the `streamrt` CLI, one module each (see `streamrt.cli` for the contract)."""

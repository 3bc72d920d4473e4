"""CLI commands, one module each; `cli.py` registers them. Commands parse options, call the app, map exit codes."""

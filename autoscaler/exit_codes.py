"""The exit codes every command uses."""

EXIT_OK = 0
EXIT_UNREACHABLE = 1
"""A --once tick, or a command reading history, got no answer from Prometheus or Docker."""
EXIT_BAD_INPUT = 2
"""Usage, an invalid policy or input file, or a port already in use."""
EXIT_INTERRUPTED = 130
"""An offline command or `validate` stopped by Ctrl-C (SIGINT), as shells report it: 128 +
the signal's number."""

"""The ``farm`` command: a client of the HTTP API (predict, get, cancel, usage) and the operator's
commands (up, worker, migrate, keys). Operator commands start the farm's processes by command line,
never by importing worker code."""

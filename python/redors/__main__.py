"""``python -m redors COMMAND [ARGS...]`` runs one of the redors commands."""

import sys

from redors._entry import run_command

if len(sys.argv) < 2:
    sys.stderr.write("usage: python -m redors COMMAND [ARGS...]\n")
    sys.exit(2)
run_command(sys.argv[1], sys.argv[2:])

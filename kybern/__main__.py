"""`python -m kybern` is the `kybern` command."""

from kybern.cli.main import main

main()

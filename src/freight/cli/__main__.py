"""`python -m freight.cli`: the `freight` command."""

from freight.cli.main import main

main()

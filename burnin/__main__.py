"""``python -m burnin`` runs the CLI."""

from burnin.cli import main

main()

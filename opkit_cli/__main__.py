"""``python -m opkit_cli`` runs the command line."""

from opkit_cli.main import main

raise SystemExit(main())

"""`python -m tinygpt ...`: the command line (tinygpt/cli/)."""
from .cli import main

raise SystemExit(main())

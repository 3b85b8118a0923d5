"""``python -m dsrouter``."""

from dsrouter.cli import main

raise SystemExit(main())

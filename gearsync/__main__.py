"""`python -m gearsync` is the `gearsync` command."""
from gearsync.cli import main

raise SystemExit(main())

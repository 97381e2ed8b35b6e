"""``python -m speeddata.cli``: the ``speeddata`` command."""

from .main import main

raise SystemExit(main())

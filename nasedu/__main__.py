"""``python -m nasedu`` runs the command line."""

import sys

from nasedu.cli import main

sys.exit(main())

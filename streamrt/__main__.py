"""`python -m streamrt` runs the command line."""

import sys

from streamrt.cli import main

sys.exit(main())

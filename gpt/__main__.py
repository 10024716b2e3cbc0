"""`python -m gpt`: the command line (`gpt/cli/`)."""

import sys

from gpt.cli import main

if __name__ == "__main__":
    sys.exit(main())

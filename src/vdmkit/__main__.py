"""``python -m vdmkit ...``: the command line (also what ``vdmkit train --nproc N`` runs under torchrun)."""

import sys

from vdmkit.cli import main

if __name__ == "__main__":
    sys.exit(main())

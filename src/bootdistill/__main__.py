"""`python -m bootdistill ...` (and so `torchrun -m bootdistill ...`): the same CLI as `bootdistill`."""

import sys

from .cli import main

sys.exit(main())

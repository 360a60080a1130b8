"""``burnin run`` for the rack tests, with the slow-link test seam of the Runtime.

torchrun starts this script on the node whose link a test slows: it reads
``BURNIN_TEST_SLOW_LINK_S`` and passes it as ``Runtime.rack_link_delay_s``, the seconds the
cross-node stage adds inside each timed transfer of this node; with
``BURNIN_TEST_SLOW_LINK_RANK`` set, only on the node of that rank (torchrun's ``GROUP_RANK``),
for a test that needs the slow node not to be rank 0. The production entry point (``burnin``)
never reads these variables.
"""

from __future__ import annotations

import os
import sys

from burnin.cli import cli
from burnin.runtime import Runtime

if __name__ == "__main__":
    delay_s = float(os.environ.get("BURNIN_TEST_SLOW_LINK_S", "0"))
    rank = os.environ.get("BURNIN_TEST_SLOW_LINK_RANK")
    if rank is not None and rank != os.environ.get("GROUP_RANK"):
        delay_s = 0.0
    cli.main(args=sys.argv[1:], obj=Runtime(rack_link_delay_s=delay_s), standalone_mode=True)

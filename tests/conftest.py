"""Suite-wide set-up: each pytest-xdist worker picks ports from its own slice.

``replikv.ports`` picks below the kernel's ephemeral range; here the range is cut into one slice
per worker (``REPLIKV_PORT_RANGE``, inherited by the node processes and ``replikv`` commands a test
starts), so two workers never offer the same port, whatever their tests' timing.
"""

import os

from replikv import ports

_worker = os.environ.get("PYTEST_XDIST_WORKER", "")
if _worker.startswith("gw") and ports.RANGE_ENV not in os.environ:
    _count = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    _index = int(_worker[2:])
    _lo, _hi = ports.DEFAULT_RANGE
    _width = (_hi - _lo) // _count
    os.environ[ports.RANGE_ENV] = f"{_lo + _index * _width}-{_lo + (_index + 1) * _width}"

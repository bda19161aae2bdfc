"""Transactions across Raft groups: the participants' and the records' rules (``table.py``)
and the coordinator's steps (``coordinator.py``). Pure: no I/O, no clock."""

from replikv.core.txn.coordinator import Coordinator, Step
from replikv.core.txn.table import ABORTED, COMMITTED, PENDING, Prepared, TxnTable, older

__all__ = ["ABORTED", "COMMITTED", "PENDING", "Coordinator", "Prepared", "Step", "TxnTable", "older"]

"""The replicated data set: the command table, the state machine and the
data-type families (see ``state_machine.py``).

Importing anything under ``replikv.kv`` first loads every family
(``kv/types/``), which registers its commands and value type, so the
command table (``kv/commands.py``) is complete wherever it is read.
"""

from replikv.kv import types as _types  # noqa: F401  (registers the families)

"""The data-type families: one module per type, each declaring its commands
(``kv.commands.command`` on each operation) and its value type
(``kv.values.value_type``) as it is imported.

To add a family (sorted sets, streams, ...): write ``kv/types/<family>.py``
with its value type (a new snapshot tag) and its commands, and import it
here. Nothing else changes: the command table, dispatch, TYPE, snapshots and
the digest all read the registrations.
"""

from replikv.kv.types import bits, hashes, keys, lists, locks, scripting, sets, streams, strings, zsets

FAMILIES = (strings, bits, lists, sets, hashes, zsets, streams, keys, scripting, locks)

__all__ = ["FAMILIES"]

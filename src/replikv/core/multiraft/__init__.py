"""Many Raft groups on one node (hash-slot sharding, issue 13): host.py, messages.py."""

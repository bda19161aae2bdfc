"""The leaderless (Dynamo-style) mode's pure core: ring, coordinator, hints, Merkle trees, Paxos."""

"""The leaderless (Dynamo-style) core of issue 9: ring placement, quorums, hints, Merkle anti-entropy, Paxos CAS."""

"""Server commands (CONFIG, SLOWLOG, TIME, MEMORY, INFO) against redis-server
on a real replikv node: replies and errors where Redis's are deterministic."""

from __future__ import annotations

from tests.differential.oracle import RawPair


def test_config_get_set_and_errors(raw_pair: RawPair) -> None:
    raw_pair.same(["CONFIG", "SET", "timeout", "30"], ["CONFIG", "GET", "timeout"],
                  ["CONFIG", "SET", "maxmemory-policy", "allkeys-lru", "maxmemory", "100mb"],
                  ["CONFIG", "GET", "maxmemory-policy"], ["CONFIG", "GET", "maxmemory"],
                  ["CONFIG", "SET", "maxmemory", "0"], ["CONFIG", "SET", "maxmemory-policy", "noeviction"],
                  ["CONFIG", "SET", "timeout", "x"], ["CONFIG", "SET", "nosuchoption", "1"],
                  ["CONFIG", "SET", "timeout"], ["CONFIG", "SET", "maxmemory-policy", "sometimes"],
                  ["CONFIG", "SET", "timeout", "0"], ["CONFIG", "GET", "hash-max-listpack-entries"],
                  ["CONFIG", "SET", "hash-max-listpack-entries", "512"], ["CONFIG", "GET"],
                  ["CONFIG", "FOO"], ["CONFIG", "RESETSTAT"], ["CONFIG", "GET", "slowlog-max-len"],
                  ["CONFIG", "SET", "slowlog-max-len", "128"],
                  ["CONFIG", "SET", "databases", "4"], ["CONFIG", "GET", "maxmemory-samples"])


def test_slowlog_time_memory(raw_pair: RawPair) -> None:
    raw_pair.same(["SLOWLOG", "RESET"], ["SLOWLOG", "LEN"], ["SLOWLOG", "GET", "x"], ["SLOWLOG", "FOO"],
                  ["SLOWLOG", "LEN", "1"], ["TIME", "x"], ["MEMORY", "USAGE", "missing"],
                  ["MEMORY", "USAGE", "k", "SAMPLES"], ["MEMORY", "FOO"], ["MEMORY", "PURGE"])
    redis_reply, replikv_reply = raw_pair.exchange(["TIME"], ["SET", "k", "v"], ["MEMORY", "USAGE", "k"],
                                                   ["MEMORY", "USAGE", "k", "SAMPLES", "0"])
    for replies in (redis_reply, replikv_reply):
        seconds, micros = replies[0]
        assert seconds.isdigit() and micros.isdigit() and int(micros) < 1_000_000
        assert isinstance(replies[2], int) and replies[2] > 0 and isinstance(replies[3], int)
    assert abs(int(redis_reply[0][0]) - int(replikv_reply[0][0])) <= 2


def test_info_sections(raw_pair: RawPair) -> None:
    redis_reply, replikv_reply = raw_pair.exchange(["INFO", "server", "clients"], ["INFO", "nosuch"],
                                                   ["INFO", "commandstats"], ["INFO"])
    for replies in (redis_reply, replikv_reply):
        heads = [line for line in replies[0].decode().split("\r\n") if line.startswith("#")]
        assert heads == ["# Server", "# Clients"]
        assert replies[1] == b""
        assert replies[2].startswith(b"# Commandstats\r\ncmdstat_")
        default = [line for line in replies[3].decode().split("\r\n") if line.startswith("#")]
        assert "# Commandstats" not in default and {"# Server", "# Memory", "# Stats", "# CPU"} <= set(default)


def test_client_replies(raw_pair: RawPair) -> None:
    raw_pair.same(["CLIENT", "SETNAME", "worker-1"], ["CLIENT", "GETNAME"], ["CLIENT", "SETNAME", "a b"],
                  ["CLIENT", "KILL", "1.2.3.4:5"], ["CLIENT", "KILL", "ID", "0"], ["CLIENT", "KILL", "ID", "999999"],
                  ["CLIENT", "KILL", "ADDR"], ["CLIENT", "UNBLOCK", "999999"], ["CLIENT", "UNBLOCK", "1", "MAYBE"],
                  ["CLIENT", "LIST", "TYPE", "weird"], ["CLIENT", "LIST", "ID", "x"], ["CLIENT", "FOO"],
                  ["CLIENT", "NO-EVICT", "on"], ["CLIENT", "NO-EVICT", "x"], ["CLIENT", "KILL", "USER", "nobody"])
    redis_reply, replikv_reply = raw_pair.exchange(["CLIENT", "SETNAME", "me"], ["CLIENT", "INFO"],
                                                   ["CLIENT", "LIST", "TYPE", "normal"])
    for replies in (redis_reply, replikv_reply):
        fields = dict(f.split("=", 1) for f in replies[1].decode().split())
        assert fields["name"] == "me" and fields["cmd"] == "client|info" or fields["cmd"] == "client"
        assert {"id", "addr", "laddr", "fd", "age", "idle", "flags", "db", "sub", "psub", "multi", "qbuf",
                "omem", "tot-mem", "cmd", "user", "resp"} <= set(fields)
        assert "name=me" in replies[2].decode()


def test_save_commands(raw_pair: RawPair) -> None:
    raw_pair.same(["SET", "k", "v"], ["SAVE"], ["BGSAVE", "NOW"], ["SAVE", "x"], ["LASTSAVE", "x"])
    redis_reply, replikv_reply = raw_pair.exchange(["SET", "k2", "v"], ["BGSAVE"], ["LASTSAVE"])
    assert redis_reply[1] == replikv_reply[1] == b"Background saving started"
    assert abs(redis_reply[2] - replikv_reply[2]) <= 5

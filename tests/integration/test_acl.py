"""ACL users on a real cluster, as redis-cli and redis-py users meet them."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import redis

from tests.integration.cluster import Cluster, wait_for

pytestmark = pytest.mark.integration


def test_read_only_user_with_redis_cli_and_redis_py(tmp_path: Path) -> None:
    c = Cluster(tmp_path / "c", 3, requirepass="adminpw", aclfile=str(tmp_path / "c" / "users.acl"))
    c.start()
    try:
        admin = c.client("n1")
        admin.set("k", "v")
        assert admin.execute_command("ACL", "SETUSER", "ro", "on", ">ropw", "~*", "+@read") == b"OK"
        assert admin.execute_command("ACL", "SETUSER", "app", "on", ">apppw", "~app:*", "+@all",
                                     "-@dangerous") == b"OK"
        ro = redis.Redis(port=c.port("n1"), username="ro", password="ropw", socket_timeout=10)
        assert ro.get("k") == b"v"
        with pytest.raises(redis.exceptions.NoPermissionError, match="no permissions to run the 'set'"):
            ro.set("k", "x")
        assert ro.execute_command("ACL", "WHOAMI") == b"ro"
        app = redis.Redis(port=c.port("n1"), username="app", password="apppw", socket_timeout=10)
        assert app.set("app:1", "x") is True
        with pytest.raises(redis.exceptions.NoPermissionError, match="access a key"):
            app.get("k")
        with pytest.raises(redis.exceptions.NoPermissionError):
            app.flushall()
        with pytest.raises(redis.exceptions.AuthenticationError):
            redis.Redis(port=c.port("n1"), username="ro", password="wrong", socket_timeout=10).ping()
        if shutil.which("redis-cli"):
            out = subprocess.run(["redis-cli", "-p", str(c.port("n1")), "--user", "ro", "--pass", "ropw",
                                  "--no-auth-warning", "GET", "k"], capture_output=True, text=True, timeout=30)
            assert out.stdout.strip() == "v"
            out = subprocess.run(["redis-cli", "-p", str(c.port("n1")), "--user", "ro", "--pass", "ropw",
                                  "--no-auth-warning", "SET", "k", "x"], capture_output=True, text=True, timeout=30)
            assert "NOPERM" in out.stdout
        # ACL SAVE writes the file; another node loads it and knows the user
        assert admin.execute_command("ACL", "SAVE") == b"OK"
        n2 = c.client("n2")
        with pytest.raises(redis.exceptions.AuthenticationError):
            redis.Redis(port=c.port("n2"), username="ro", password="ropw", socket_timeout=10).ping()
        assert n2.execute_command("ACL", "LOAD") == b"OK"
        ro2 = redis.Redis(port=c.port("n2"), username="ro", password="ropw", socket_timeout=10)
        wait_for(lambda: ro2.get("k") == b"v", 20, "n2 to replicate k")
        # a restarted node reads the file at start
        c.kill("n3")
        c.start("n3")
        ro3 = redis.Redis(port=c.port("n3"), username="ro", password="ropw", socket_timeout=10)
        assert ro3.execute_command("ACL", "WHOAMI") == b"ro"
        with pytest.raises(redis.exceptions.NoPermissionError):
            ro3.set("k", "x")
    finally:
        c.close()

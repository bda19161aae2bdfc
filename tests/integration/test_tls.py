"""TLS for clients (``tls_port``, Redis's option names) and between peers
(``tls_replication``), with certificates made by the openssl command line.

redis-py with ``ssl=True`` and ``redis-cli --tls`` connect; a client without
a certificate is refused when ``tls_auth_clients`` is yes; peers replicate
over mutual TLS and refuse a plain-text dialer.
"""

from __future__ import annotations

import dataclasses
import shutil
import socket
import ssl
import subprocess
from pathlib import Path

import pytest
import redis

from tests.integration.cluster import Cluster, free_ports, read_until_closed, wait_for

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command line"),
]


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_certs(d: Path) -> dict[str, Path]:
    """A CA, a node certificate for 127.0.0.1 and a client certificate."""
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
            "-days", "2", "-subj", "/CN=replikv test CA", cwd=d)
    for name, ext in (("node", "subjectAltName=IP:127.0.0.1"), ("client", "extendedKeyUsage=clientAuth")):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                "-subj", f"/CN={name}", cwd=d)
        (d / f"{name}.ext").write_text(ext + "\n")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext", cwd=d)
    return {n: d / n for n in ("ca.pem", "node.pem", "node.key", "client.pem", "client.key")}


@pytest.fixture
def tls_cluster(tmp_path: Path):  # type: ignore[no-untyped-def]
    certs = make_certs(tmp_path)
    c = Cluster(tmp_path / "c", 3, tls_cert_file=str(certs["node.pem"]), tls_key_file=str(certs["node.key"]),
                tls_ca_cert_file=str(certs["ca.pem"]), tls_replication=True)
    tls_ports = free_ports(3)
    c.config.nodes = {n: dataclasses.replace(a, tls_port=tls_ports[i])
                      for i, (n, a) in enumerate(c.config.nodes.items())}
    c.config.save(c.path)
    c.start()
    yield c, certs
    c.close()


def tls_client(c: Cluster, node: str, certs: dict[str, Path], with_cert: bool = True) -> redis.Redis:
    kw = {"ssl_certfile": str(certs["client.pem"]), "ssl_keyfile": str(certs["client.key"])} if with_cert else {}
    return redis.Redis(host="127.0.0.1", port=c.config.nodes[node].tls_port, ssl=True,
                       ssl_ca_certs=str(certs["ca.pem"]), socket_timeout=10, **kw)


def test_clients_over_tls_and_peers_over_mutual_tls(tls_cluster) -> None:  # type: ignore[no-untyped-def]
    c, certs = tls_cluster
    leader = tls_client(c, "n1", certs)
    assert leader.set("k", "over tls") is True
    # the followers got it through the peers' TLS connections
    for node in ("n2", "n3"):
        wait_for(lambda: tls_client(c, node, certs).get("k") == b"over tls", 20, f"{node} to replicate")
    # redis-cli --tls, as a user would
    if shutil.which("redis-cli"):
        out = subprocess.run(
            ["redis-cli", "-p", str(c.config.nodes["n2"].tls_port), "--tls", "--cacert", str(certs["ca.pem"]),
             "--cert", str(certs["client.pem"]), "--key", str(certs["client.key"]), "GET", "k"],
            capture_output=True, text=True, timeout=30)
        assert out.stdout.strip() == "over tls", out.stderr
    # the plain port still serves (as Redis keeps `port` beside `tls-port`)
    assert c.client("n1").get("k") == b"over tls"


def test_a_client_without_a_certificate_is_refused(tls_cluster) -> None:  # type: ignore[no-untyped-def]
    c, certs = tls_cluster
    with pytest.raises((redis.ConnectionError, ssl.SSLError, OSError)):
        tls_client(c, "n1", certs, with_cert=False).ping()
    assert tls_client(c, "n1", certs).ping() is True


def test_the_peer_port_refuses_plain_text(tls_cluster) -> None:  # type: ignore[no-untyped-def]
    c, _ = tls_cluster
    with socket.create_connection(("127.0.0.1", c.config.nodes["n1"].peer_port), timeout=10) as s:
        s.sendall(b"\x00\x00\x00\x10not a tls hello!")
        data = read_until_closed(s)
    assert b"replikv-peer" not in data  # no challenge was ever sent in the clear

"""TLS contexts for client and peer connections (the standard library's ssl).

Redis's model and option names: ``tls_port`` is a second client listener
that speaks TLS; ``tls_cert_file`` / ``tls_key_file`` are the node's
certificate and key; ``tls_ca_cert_file`` is the CA whose signature a
client's (``tls_auth_clients yes``: required, ``optional``: checked if
shown, ``no``: not asked for) or a peer's certificate must carry;
``tls_replication`` runs every peer connection over mutual TLS.

Peers are identified by the cluster secret's handshake on top of TLS
(runtime/peer_auth.py), so peer certificates are checked against the CA
but not against a host name: nodes are addressed by IP, and the handshake
binds the node ids.
"""

from __future__ import annotations

import ssl

from replikv.config import ConfigError, NodeOptions

_VERIFY = {"yes": ssl.CERT_REQUIRED, "optional": ssl.CERT_OPTIONAL, "no": ssl.CERT_NONE}


def _load(ctx: ssl.SSLContext, opts: NodeOptions) -> ssl.SSLContext:
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(str(opts.tls_cert_file), str(opts.tls_key_file))
        if opts.tls_ca_cert_file:
            ctx.load_verify_locations(cafile=str(opts.tls_ca_cert_file))
    except (OSError, ssl.SSLError) as e:
        raise ConfigError(f"TLS: cannot load the certificate, key or CA "
                          f"({opts.tls_cert_file}, {opts.tls_key_file}, {opts.tls_ca_cert_file}): {e}") from None
    return ctx


def client_listener_context(opts: NodeOptions) -> ssl.SSLContext:
    """The server side of ``tls_port``: clients' certificates as ``tls_auth_clients`` says."""
    ctx = _load(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), opts)
    ctx.verify_mode = _VERIFY[opts.tls_auth_clients]
    return ctx


def peer_contexts(opts: NodeOptions) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(accepting side, dialing side) of mutual TLS between peers."""
    server = _load(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), opts)
    server.verify_mode = ssl.CERT_REQUIRED
    client = _load(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT), opts)
    client.check_hostname = False  # addressed by IP; the secret's handshake binds the node ids
    client.verify_mode = ssl.CERT_REQUIRED
    return server, client

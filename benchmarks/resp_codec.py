"""Micro-benchmark of the RESP codec (core/resp.py); prints rates, asserts nothing.

Parse: a pipelined stream of 100k ``SET key:NNN value`` commands fed to one
RequestParser in 64 KiB chunks, as the server reads them. The same stream
through a bare hiredis.Reader is printed beside it as the reference (the cost
of the codec's checks is the ratio); also inline commands, and one command per
feed() (a client that does not pipeline). Encode: encode_reply over a mix of the
replies a server sends most (OK, bulk, null, integer, a 10-element array).
"""

from __future__ import annotations

import hiredis
from _support import best_of

from replikv.core.resp import RequestParser, encode_command, encode_reply

N_COMMANDS = 100_000
CHUNK = 64 * 1024



def main() -> None:
    stream = b"".join(encode_command([b"SET", b"key:%d" % i, b"value"]) for i in range(N_COMMANDS))
    chunks = [stream[i : i + CHUNK] for i in range(0, len(stream), CHUNK)]

    def parse() -> None:
        parser = RequestParser()
        count = 0
        for chunk in chunks:
            parser.feed(chunk)
            count += len(parser.commands())
        if count != N_COMMANDS:
            raise SystemExit(f"parsed {count} commands, expected {N_COMMANDS}")

    def parse_hiredis() -> None:
        reader = hiredis.Reader()
        for chunk in chunks:
            reader.feed(chunk)
            gets = reader.gets
            item = gets()
            while item is not False:
                item = gets()

    inline = b"".join(b"SET key:%d value\r\n" % i for i in range(N_COMMANDS))
    inline_chunks = [inline[i : i + CHUNK] for i in range(0, len(inline), CHUNK)]

    def parse_inline() -> None:
        parser = RequestParser()
        for chunk in inline_chunks:
            parser.feed(chunk)
            parser.commands()

    single = encode_command([b"GET", b"key:1"])

    def parse_single() -> None:
        parser = RequestParser()
        for _ in range(N_COMMANDS):
            parser.feed(single)
            parser.commands()

    replies: list[object] = ["OK", b"value", None, 42, [b"v%d" % i for i in range(10)]] * (
        N_COMMANDS // 5
    )

    def encode() -> None:
        for r in replies:
            encode_reply(r)

    t_parse = best_of(parse)
    t_ref = best_of(parse_hiredis)
    t_inline = best_of(parse_inline)
    t_single = best_of(parse_single)
    t_enc = best_of(encode)
    print(f"parse_arrays_commands_per_s {N_COMMANDS / t_parse:.0f}")
    print(f"parse_hiredis_reference_per_s {N_COMMANDS / t_ref:.0f}")
    print(f"parse_vs_hiredis_ratio {t_ref / t_parse:.2f}")
    print(f"parse_inline_commands_per_s {N_COMMANDS / t_inline:.0f}")
    print(f"parse_one_command_per_feed_per_s {N_COMMANDS / t_single:.0f}")
    print(f"encode_replies_per_s {len(replies) / t_enc:.0f}")


if __name__ == "__main__":
    main()

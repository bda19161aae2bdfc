"""The glob matcher (kv/glob.py) against the regex its rules translate to.

The matcher splits a pattern at its stars and never backtracks over the
whole pattern; this checks it agrees with a full-pattern regex (the
reference, fine on short inputs) on random patterns and subjects, and that an
adversarial pattern that made the backtracking regex run for seconds on a
200-byte key is decided on a 100 kB key.
"""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from replikv.kv.glob import _translate, compile_glob, match

ALPHABET = b"ab*?[]^-\\\\c\\n"
patterns = st.lists(st.sampled_from([bytes([c]) for c in ALPHABET]), max_size=12).map(b"".join)
subjects = st.lists(st.sampled_from([b"a", b"b", b"c", b"-", b"^", b"\n", b"]"]), max_size=14).map(b"".join)


def reference(pattern: bytes, subject: bytes) -> bool:
    if not pattern:
        return not subject
    return bool(subject) and re.fullmatch(_translate(pattern), subject, re.DOTALL) is not None


@settings(max_examples=3000, deadline=None)
@given(patterns, subjects)
def test_matcher_agrees_with_the_full_regex(pattern: bytes, subject: bytes) -> None:
    assert match(pattern, subject) == reference(pattern, subject), (pattern, subject)


def test_adversarial_patterns_are_decided_on_long_keys() -> None:
    key = b"a" * 100_000
    assert not compile_glob(b"*a*a*a*a*a*a*a*a*a*a*b")(key)
    assert compile_glob(b"*a*a*a*a*a*a*a*a*a*a*")(key)
    assert compile_glob(b"a*a?a*[ab]a*a")(key)
    assert not compile_glob(b"a*a?a*[b]a*a")(key)

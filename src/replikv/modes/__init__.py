"""The registry of replication modes: ``--mode NAME`` -> its ``ModeSpec``.

A new mode registers its spec here (one import line in ``_builtin``) and is
then offered by ``replikv up``, ``replikv node``, ``CONSISTENCY``,
``replikv check`` and ``replikv sim``, and run by the contract tests in
``tests/integration/test_mode_contract.py``.
"""

from __future__ import annotations

from replikv.modes.spec import READ_LEVELS, Claim, ModeSpec

__all__ = ["READ_LEVELS", "Claim", "ModeSpec", "get", "names", "specs", "offering", "level_refusal"]

_REGISTRY: dict[str, ModeSpec] = {}
_LOADED: list[bool] = []  # the built-in modes were imported (one of them alone may have been before)


def register(spec: ModeSpec) -> ModeSpec:
    if spec.name in _REGISTRY:
        raise ValueError(f"mode {spec.name!r} registered twice")
    _REGISTRY[spec.name] = spec
    return spec


def _builtin() -> None:
    from replikv.modes import leader_follower, leaderless, multi_leader, raft, single  # noqa: F401  (each registers itself)


def names() -> tuple[str, ...]:
    """Registered mode names, the default (``leader-follower``) first. Every built-in
    mode is there whichever mode module was imported first (a runtime imports its own)."""
    if not _LOADED:
        _LOADED.append(True)
        _builtin()
        for name in ("leader-follower", *[n for n in _REGISTRY if n != "leader-follower"]):
            _REGISTRY[name] = _REGISTRY.pop(name)  # the default first, then in import order
    return tuple(_REGISTRY)


def specs() -> tuple[ModeSpec, ...]:
    names()
    return tuple(_REGISTRY.values())


def get(name: str) -> ModeSpec:
    """The spec of ``name``; ``ValueError`` listing the modes there are."""
    names()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown mode {name!r}; choose from {', '.join(_REGISTRY)}") from None


def offering(kind: str, level: str) -> list[str]:
    """The modes whose ``kind`` ("read" or "write") levels include ``level``."""
    return [s.name for s in specs()
            if level in (s.read_levels if kind == "read" else s.write_levels)]


def level_refusal(spec: ModeSpec, kind: str, level: str) -> str:
    """The error for a level ``spec`` cannot give: what it offers, and who offers that level."""
    have = spec.read_levels if kind == "read" else spec.write_levels
    others = [m for m in offering(kind, level) if m != spec.name]
    text = (f"ERR {kind} level '{level}' is not offered in {spec.name} mode "
            f"(it offers {', '.join(have)})")
    if others:
        text += "; a cluster started with " + " or ".join(f"--mode {m}" for m in others) + " offers it"
    return text

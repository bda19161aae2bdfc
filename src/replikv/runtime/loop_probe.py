"""The loop-lag probe (a diagnostic, for benchmarks and tests): a node started with
REPLIKV_LOOP_PROBE_MS=<ms> in its environment logs every event-loop stall longer than that
(``BaseRunner.serve`` runs ``LoopProbe.run`` beside its timer loops)."""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
import traceback

log = logging.getLogger("replikv.node")

LOOP_PROBE_ENV = "REPLIKV_LOOP_PROBE_MS"
LOOP_PROBE_STACKS_ENV = "REPLIKV_LOOP_PROBE_STACKS"
LOOP_PROBE_PERIOD_S = 0.005


class LoopProbe:
    """Times the node's event loop: a callback every ``LOOP_PROBE_PERIOD_S`` records how late it
    ran. A lateness over ``threshold_s`` is a stall: counted (INFO ``loop_stalls``,
    ``loop_stall_max_ms``) and logged with the main thread's CPU time over the same span, which
    tells a loop busy in one long callback or a burst of work (CPU time near the span) from a
    process that was not running (CPU time far below it: descheduled, or blocked in a system
    call). With REPLIKV_LOOP_PROBE_STACKS=1 too, a watchdog thread logs the main thread's stack
    once per stall while it lasts (what ran); it takes the GIL every period, which itself
    delays the loop on a busy machine, so it is a separate switch. Off unless
    REPLIKV_LOOP_PROBE_MS is set."""

    def __init__(self, node_id: str, stats: dict[str, int], threshold_s: float, stacks: bool) -> None:
        self.node_id, self.stats, self.threshold_s, self.stacks = node_id, stats, threshold_s, stacks
        stats.setdefault("loop_stalls", 0)
        stats.setdefault("loop_stall_max_ms", 0)
        self._beat = time.monotonic()
        self._main = threading.get_ident()
        self._stop = threading.Event()

    async def run(self) -> None:
        if self.stacks:
            threading.Thread(target=self._watch, name="loop-probe", daemon=True).start()
        try:
            while True:
                start, cpu = time.monotonic(), time.thread_time()
                await asyncio.sleep(LOOP_PROBE_PERIOD_S)
                now = self._beat = time.monotonic()
                late = now - start - LOOP_PROBE_PERIOD_S
                if late > self.threshold_s:
                    late_ms = round(late * 1000)
                    self.stats["loop_stalls"] += 1
                    self.stats["loop_stall_max_ms"] = max(self.stats["loop_stall_max_ms"], late_ms)
                    log.warning("node %s: loop stall %d ms ending at %.3f, main thread CPU %.1f ms of "
                                "%.1f ms", self.node_id, late_ms, time.time(),
                                (time.thread_time() - cpu) * 1000, (now - start) * 1000)
        finally:
            self._stop.set()

    def _watch(self) -> None:
        """On the watchdog thread: the main thread's stack once per stall, while it lasts."""
        dumped = 0.0
        while not self._stop.wait(LOOP_PROBE_PERIOD_S):
            beat = self._beat
            if beat != dumped and time.monotonic() - beat > self.threshold_s + LOOP_PROBE_PERIOD_S:
                dumped = beat
                frame = sys._current_frames().get(self._main)
                if frame is not None:
                    stack = "".join(traceback.format_stack(frame, limit=12))
                    log.warning("node %s: loop stalled %.0f ms so far at %.3f; main thread in:\n%s",
                                self.node_id, (time.monotonic() - beat) * 1000, time.time(), stack)

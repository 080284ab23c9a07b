"""Progress lines on stderr (step k of n, elapsed time) and the whole run's time budget."""

import sys
import time


class Progress:
    """Counts steps against a time budget; a step that would start after the deadline is skipped."""

    def __init__(self, total_steps: int, time_limit_s: float, stream=None):
        self.total = total_steps
        self.done = 0
        self.start = time.monotonic()
        self.deadline = self.start + time_limit_s
        self.stream = stream or sys.stderr

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def begin(self, label: str) -> bool:
        """Announce the next step; False when the time limit has passed (the step is skipped)."""
        self.done += 1
        elapsed = time.monotonic() - self.start
        if self.remaining() <= 0:
            self._print(f"[{self.done:>3}/{self.total}] {elapsed:6.1f}s  skipped (time limit): {label}")
            return False
        self._print(f"[{self.done:>3}/{self.total}] {elapsed:6.1f}s  {label}")
        return True

    def note(self, text: str) -> None:
        self._print(f"{'':>10}{'':>8}  -> {text}")

    def _print(self, line: str) -> None:
        print(line, file=self.stream, flush=True)

"""Progress as tqdm-style log lines, which the Replicate clients parse into a progress bar."""

import time

BAR_WIDTH = 10


class ProgressLog:
    """The log text of one run: one tqdm-style line per reported step."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.lines: list[str] = []
        self.last: tuple[int, int] | None = None  # (step, total) last reported

    def step(self, step: int, total: int) -> None:
        self.last = (step, total)
        elapsed = time.perf_counter() - self.started
        rate = step / elapsed if elapsed > 0 else 0.0
        remaining = (total - step) / rate if rate > 0 else 0.0
        filled = BAR_WIDTH * step // total
        bar = "█" * filled + " " * (BAR_WIDTH - filled)
        percent = 100 * step // total
        self.lines.append(
            f"{percent:3d}%|{bar}| {step}/{total} [{_clock(elapsed)}<{_clock(remaining)}, {rate:.2f}it/s]"
        )

    def note(self, line: str) -> None:
        """A plain log line (not progress)."""
        self.lines.append(line)

    def text(self) -> str:
        return "\n".join(self.lines) + ("\n" if self.lines else "")


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes:02d}:{secs:02d}"

"""Progress of a training loop: a tqdm bar on a terminal; elsewhere (CI logs, output redirected to a file) one
plain status line every `every_s` seconds and at the end, instead of a carriage-return update per step."""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, total: int, initial: int = 0, enabled: bool = True, every_s: float = 30.0, stream=None):
        self.stream = stream if stream is not None else sys.stderr
        self.total, self.n, self.enabled, self.every_s = total, initial, enabled, every_s
        self.postfix: dict = {}
        self.bar = None
        if enabled and getattr(self.stream, "isatty", lambda: False)():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, file=self.stream)
        self._t0 = self._last = time.monotonic()
        self._n0 = initial

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.enabled and time.monotonic() - self._last >= self.every_s:
            self._line()

    def set_postfix(self, postfix: dict) -> None:
        self.postfix = postfix
        if self.bar is not None:
            self.bar.set_postfix(postfix)

    def _line(self) -> None:
        now = time.monotonic()
        self._last = now
        rate = (self.n - self._n0) / max(now - self._t0, 1e-9)
        eta = f", {(self.total - self.n) / rate:.0f} s left" if rate > 0 and self.n < self.total else ""
        extra = " ".join(f"{k}={v}" for k, v in self.postfix.items())
        print(f"step {self.n}/{self.total} ({100 * self.n / max(self.total, 1):.0f}%), {rate:.2f} step/s{eta}"
              + (f"  {extra}" if extra else ""), file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.enabled and self.n > self._n0:
            self._line()

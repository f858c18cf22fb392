import io

from pygan.training.progress import Progress


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_plain_lines_at_an_interval_when_not_a_terminal(monkeypatch):
    clock = Clock()
    monkeypatch.setattr("pygan.training.progress.time.monotonic", clock)
    out = io.StringIO()
    p = Progress(100, enabled=True, every_s=30, stream=out)
    p.set_postfix({"D": "0.5"})
    for _ in range(100):
        clock.t += 1.0
        p.update()
    p.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 4 and "\r" not in out.getvalue()  # at 30, 60, 90 s and the closing line
    assert lines[0].startswith("step 30/100 (30%), 1.00 step/s, 70 s left  D=0.5")
    assert lines[-1].startswith("step 100/100 (100%)")


def test_disabled_prints_nothing():
    out = io.StringIO()
    p = Progress(10, enabled=False, stream=out)
    p.update(10)
    p.close()
    assert out.getvalue() == ""

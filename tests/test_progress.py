"""The progress reporter: timed lines without a terminal, a bar redrawn in place on one."""
import io

import pytest

from rocket_ctr import progress
from rocket_ctr.progress import Progress, line_interval, stage


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_lines_every_interval_with_rows_rate_and_time_left():
    clock, out = Clock(), io.StringIO()
    shown = Progress(1_000, "rows", prefix="epoch 1/3: ", stream=out, every=10, clock=clock)
    assert not shown.tty
    clock.now += 1
    shown.update(100)  # the first update carries the start-up: the rate counts from there
    for _ in range(5):  # 100 rows every 2 s: a line at 11 s only
        clock.now += 2
        shown.update(100)
    assert out.getvalue() == "epoch 1/3: 600/1,000 rows, 50 rows/s, 0:00:08 left\n"
    clock.now += 9
    shown.update(50)  # 9 s after the last line: none
    clock.now += 1
    shown.update(50)
    assert out.getvalue().splitlines()[-1] == "epoch 1/3: 700/1,000 rows, 30 rows/s, 0:00:10 left"
    clock.now += 1
    shown.close()
    shown.close()  # once only
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and lines[-1] == "epoch 1/3: 700 rows, 32 rows/s, done in 0:00:22"


def test_unknown_total_detail_and_a_resumed_count():
    clock, out = Clock(), io.StringIO()
    shown = Progress(None, "requests", stream=out, every=0, clock=clock, detail=lambda: "7 rows")
    clock.now += 2
    shown.update(4)
    assert out.getvalue() == "4 requests (7 rows), 2 requests/s\n"
    out = io.StringIO()
    resumed = Progress(100, stream=out, every=0, clock=clock, done=50)
    clock.now += 5
    resumed.update(10)  # the rate counts only the rows done since the start
    assert out.getvalue() == "60/100 rows, 2 rows/s, 0:00:20 left\n"


def test_terminal_redraws_in_place_and_close_ends_the_line():
    clock, out = Clock(), Terminal()
    shown = Progress(200, stream=out, clock=clock)
    assert shown.tty and shown.every == progress.REDRAW_SECONDS
    clock.now += 1
    shown.update(100)
    clock.now += 1
    shown.update(100)
    shown.close()
    text = out.getvalue()
    assert text.count("\r") == 3 and "\n" not in text[:-1] and text.endswith("\n")
    assert "50.0% 100/200 rows" in text and "100.0% 200/200 rows" in text.splitlines()[-1]


def test_an_error_inside_the_block_only_ends_the_bar_line():
    clock, out = Clock(), Terminal()
    with pytest.raises(RuntimeError):
        with Progress(10, stream=out, clock=clock) as shown:
            clock.now += 1
            shown.update(3)
            raise RuntimeError("boom")
    assert out.getvalue().endswith("rows 3/s 1s\n") and out.getvalue().count("\r") == 1
    lines = io.StringIO()
    with pytest.raises(RuntimeError):
        with Progress(10, stream=lines, clock=clock):
            raise RuntimeError("boom")
    assert lines.getvalue() == ""  # no "done" line for a job that failed


def test_disabled_prints_nothing_and_stage_lines():
    out = io.StringIO()
    shown = Progress(10, stream=out, every=0, enabled=False)
    shown.update(5)
    shown.close()
    stage("export: writing 3 warmup records", stream=out, enabled=False)
    assert out.getvalue() == ""
    stage("export: writing 3 warmup records", stream=out)
    assert out.getvalue() == "export: writing 3 warmup records\n"


def test_interval_from_the_environment(monkeypatch):
    monkeypatch.delenv(progress.SECONDS_VARIABLE, raising=False)
    assert line_interval() == progress.EVERY_SECONDS == 10.0
    monkeypatch.setenv(progress.SECONDS_VARIABLE, "0.5")
    assert line_interval() == 0.5 and Progress(1, stream=io.StringIO()).every == 0.5
    for wrong in ("soon", "-1", "nan"):
        monkeypatch.setenv(progress.SECONDS_VARIABLE, wrong)
        assert line_interval() == progress.EVERY_SECONDS

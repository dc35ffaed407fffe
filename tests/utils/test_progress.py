"""progress_bar draws on a terminal and stays out of logs."""

from __future__ import annotations

import io

from dlm_ml.utils.progress import progress_bar


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_silent_when_the_stream_is_not_a_terminal():
    log = io.StringIO()
    assert list(progress_bar(range(3), file=log, desc="work")) == [0, 1, 2]
    assert log.getvalue() == ""


def test_drawn_on_a_terminal():
    screen = _Terminal()
    list(progress_bar(range(3), file=screen, desc="work"))
    assert "3/3" in screen.getvalue()


def test_off_when_not_enabled_even_on_a_terminal():
    screen = _Terminal()
    list(progress_bar(range(3), file=screen, enabled=False))
    assert screen.getvalue() == ""

"""trading_engine.progress: bars on a terminal only; one log line per result elsewhere."""

from __future__ import annotations

import io
import logging

from trading_engine.progress import tqdm


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_off_a_terminal_a_kept_bar_logs_one_line_per_result_and_draws_nothing(caplog) -> None:
    output = io.StringIO()
    with caplog.at_level(logging.INFO, logger="trading_engine.progress"):
        bar = tqdm(range(1, 4), desc="fold 0", unit="epoch", file=output)
        for epoch in bar:
            bar.set_postfix(loss=f"{1 / epoch:.4f}", best=1)
        bar.close()
    assert output.getvalue() == ""
    assert [record.getMessage() for record in caplog.records] == [
        "fold 0: epoch 1/3, best=1, loss=1.0000",
        "fold 0: epoch 2/3, best=1, loss=0.5000",
        "fold 0: epoch 3/3, best=1, loss=0.3333",
    ]


def test_off_a_terminal_a_transient_bar_is_silent(caplog) -> None:
    output = io.StringIO()
    with caplog.at_level(logging.DEBUG):
        bar = tqdm(range(5), desc="epoch 1", unit="batch", leave=False, file=output)
        for _ in bar:
            bar.set_postfix(loss=1.0)
    assert output.getvalue() == "" and not caplog.records


def test_on_a_terminal_the_bar_is_drawn_and_nothing_is_logged(caplog) -> None:
    terminal = Terminal()
    with caplog.at_level(logging.DEBUG):
        bar = tqdm(range(3), desc="fold 0", unit="epoch", file=terminal, mininterval=0)
        for _ in bar:
            bar.set_postfix(loss=1.0)
        bar.close()
    assert "fold 0: 100%" in terminal.getvalue() and "loss=1" in terminal.getvalue()
    assert not caplog.records


def test_a_disabled_bar_is_silent_everywhere(caplog) -> None:
    for stream in (io.StringIO(), Terminal()):
        with caplog.at_level(logging.DEBUG):
            bar = tqdm(range(3), desc="fold 0", file=stream, disable=True)
            assert list(bar) == [0, 1, 2]
            bar.set_postfix(loss=1.0)
        assert stream.getvalue() == "" and not caplog.records

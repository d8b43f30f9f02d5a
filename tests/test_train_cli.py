"""`python -m training.train` refuses a command line it cannot honour before reading any data, in one line on stderr."""

from __future__ import annotations

import pytest

from training import train


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--epochs", "0"], "error: --epochs must be at least 1 (got 0)"),
        (["--name", "../../escape"], "error: --name: run name '../../escape': use letters, digits, '_', '.', '-' (and not 'jobs')"),
        (["--name", "/tmp/escape"], "error: --name: run name '/tmp/escape': use letters, digits"),
        (["--name", "a" * 250], "error: --name: run name of 250 characters: use at most 64"),
    ],
)
def test_bad_flags_exit_2_with_one_line_and_write_nothing(tmp_path, capsys, flags, message):
    runs = tmp_path / "out" / "runs"
    code = train.main(["--model", "baseline_cnn", "--data", str(tmp_path / "no_data.zip"), "--output-dir", str(runs), *flags])
    out, err = capsys.readouterr()
    assert code == 2 and err.startswith(message) and err.count("\n") == 1, err
    assert list(tmp_path.iterdir()) == [], "no run folder anywhere"

"""``python -m kdcore train`` refuses a missing file or a wrong spec with one line that says what to fix, and exit status 2."""

from __future__ import annotations

import subprocess
import sys

import pytest

from kdcore.__main__ import main

SPECS_THAT_CANNOT_TRAIN = [
    (None, "no such file"),
    ('{"method": "kd", ', "is not a valid JobSpec: Invalid JSON"),
    ('{"method": "kd", "student": {"arch": "cifar_resnet8"}, "training": {"epochs": 0}}', "training.epochs: Input should be greater than or equal to 1"),
    ('{"method": "kd", "training": {"epochs": 1}}', "student: Field required"),
]


@pytest.mark.parametrize(("content", "words"), SPECS_THAT_CANNOT_TRAIN)
def test_a_spec_that_cannot_train_gets_one_line_and_exit_2(tmp_path, capsys, content, words):
    path = tmp_path / "spec.json"
    if content is not None:
        path.write_text(content)
    assert main(["train", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith("error: "), err
    assert words in err and str(path) in err and "Traceback" not in err, err


@pytest.mark.slow
@pytest.mark.parametrize(("content", "words"), [SPECS_THAT_CANNOT_TRAIN[0], SPECS_THAT_CANNOT_TRAIN[2]], ids=["missing-file", "invalid-spec"])
def test_the_real_command_prints_the_one_line_and_exits_2(tmp_path, content, words):
    """As a user runs it: the interpreter's own exit status and streams, which in-process calls of ``main`` do not show."""
    path = tmp_path / "spec.json"
    if content is not None:
        path.write_text(content)
    done = subprocess.run([sys.executable, "-m", "kdcore", "train", str(path)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done
    assert done.stdout == "" and done.stderr.count("\n") == 1 and done.stderr.startswith("error: "), done.stderr
    assert words in done.stderr and str(path) in done.stderr, done.stderr

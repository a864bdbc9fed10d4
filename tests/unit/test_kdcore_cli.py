"""``python -m kdcore train`` refuses a missing file or a wrong spec with one line that says what to fix, and exit status 2."""

from __future__ import annotations

import pytest

from kdcore.__main__ import main


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (None, "no such file"),
        ('{"method": "kd", ', "is not a valid JobSpec: Invalid JSON"),
        ('{"method": "kd", "student": {"arch": "cifar_resnet8"}, "training": {"epochs": 0}}', "training.epochs: Input should be greater than or equal to 1"),
        ('{"method": "kd", "training": {"epochs": 1}}', "student: Field required"),
    ],
)
def test_a_spec_that_cannot_train_gets_one_line_and_exit_2(tmp_path, capsys, content, words):
    path = tmp_path / "spec.json"
    if content is not None:
        path.write_text(content)
    assert main(["train", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith("error: "), err
    assert words in err and str(path) in err and "Traceback" not in err, err

"""``from kdcore import …`` gives the documented objects, whatever was imported before."""

import subprocess
import sys


def test_train_is_the_function_even_after_its_package_was_imported():
    code = "import kdcore.training, kdcore.spec; from kdcore import JobSpec, train; print(callable(train), train.__module__, JobSpec.__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["True", "kdcore.training.entry", "JobSpec"]


def test_importing_the_spec_loads_no_torch():
    code = "import sys, kdcore.spec; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"

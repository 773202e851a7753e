"""``python -m amnlib`` is the ``amnlib`` command."""

import subprocess
import sys

from amnlib.experiments import EXPERIMENTS


def test_python_m_amnlib_lists_and_fails_like_the_command():
    out = subprocess.run([sys.executable, "-m", "amnlib", "reproduce", "--list"],
                         capture_output=True, text=True, check=True).stdout
    assert sorted(line.split()[0] for line in out.splitlines()) == sorted(EXPERIMENTS)
    bad = subprocess.run([sys.executable, "-m", "amnlib", "reproduce", "nope"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "known" in bad.stderr
    usage = subprocess.run([sys.executable, "-m", "amnlib", "--help"], capture_output=True,
                           text=True, check=True).stdout
    assert usage.startswith("usage: amnlib")

"""How leadscore chooses OpenMP's wait policy at start: sleeping threads only when other processes load the cores."""

import subprocess
import sys

from leadscore.runtime import busy_cores, machine_is_busy


def test_the_machine_counts_as_busy_from_a_quarter_of_its_cores():
    assert not machine_is_busy(0.3, 2) and machine_is_busy(0.5, 2) and machine_is_busy(1.9, 2)
    assert not machine_is_busy(None, 2)  # cannot tell: OpenMP's default
    assert not machine_is_busy(1.5, 8) and machine_is_busy(2.0, 8)


def test_a_process_spinning_on_a_core_is_seen():
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        busy_cores(0.3)  # the spinner's start-up
        assert busy_cores(0.5) >= 0.7
    finally:
        spinner.kill()
        spinner.wait()

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


def test_memory_a_step_freed_goes_back_to_the_system():
    # In a process of its own: 640 MB that Arrow allocated and the step let go of stay in the process (its
    # allocator keeps them for reuse) until release_memory hands them back, before the next step's peak.
    script = """
import numpy as np, psutil, pyarrow as pa, pyarrow.compute as pc
from leadscore.runtime import release_memory
rss = lambda: psutil.Process().memory_info().rss
base = rss()
held = pc.add(pa.array(np.arange(80_000_000, dtype=np.int64)), 1)
del held
kept = rss() - base
release_memory()
print(kept, rss() - base)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    kept, after = map(int, out.stdout.split())
    assert kept > 500 * 2**20 and after < kept - 400 * 2**20, (kept, after)

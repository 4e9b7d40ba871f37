"""The glibc allocator setting used by the trainer on CPU: freed heap memory stays resident."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

# In a fresh interpreter: allocate, touch and free 24 MB, and print how much resident memory the free gave back.
PROBE = """
import sys
from egoasl.engine.host_memory import keep_freed_heap_memory
if sys.argv[1] == "keep":
    assert keep_freed_heap_memory()
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * 4096
block = bytearray(24 * 2**20)  # zero-filled, so every page is touched
held = rss()
del block
print((held - rss()) / 2**20)
"""


def _returned_mib(mode: str) -> float:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], check=True, capture_output=True, text=True)
    return float(out.stdout)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc" or not sys.platform.startswith("linux"),
                    reason="a glibc setting; the probe reads /proc/self/statm")
def test_freed_memory_stays_resident_only_with_the_setting():
    assert _returned_mib("default") > 20  # glibc's default: the 24 MB block was mmapped and is unmapped
    assert _returned_mib("keep") < 1  # kept in the heap for the next allocation

"""A process's own peak memory, for benchmarks that run a step in a child process. No imports
beyond the standard library, so importing it adds nothing to the peak it measures."""

from __future__ import annotations


def peak_rss_mb() -> float:
    """This process's own peak resident memory since it started its program (``VmHWM``), in MB.
    Not ``ru_maxrss``: Linux carries it over fork and exec, so a child of a process holding a big
    synthetic corpus would report its parent's size (a child of a 1 GB parent reported 1,037 MB)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")

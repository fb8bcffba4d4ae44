"""What the benchmark scripts (bench-readme.py, bench-peers.py) share: how busy the machine was."""
import os


def busy_seconds():
    """CPU seconds spent by everything on the machine so far (/proc/stat, all but idle+iowait)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (sum(v[:8]) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")

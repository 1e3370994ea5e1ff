"""What /proc says about a process: CPU seconds used so far and peak resident memory.

CPU is utime+stime from /proc/PID/stat (every thread, clock-tick resolution); a delta over a
measuring window divided by the requests served in it is the CPU cost per request, the figure
least disturbed by noise. Peak RSS is VmHWM; writing "5" to /proc/PID/clear_refs resets it so
each case reports its own peak (Linux >= 4.0; where refused, the peak is since process start).
"""

from __future__ import annotations

import os

_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", "rb") as fh:
        raw = fh.read()
    # The command name may hold spaces and parentheses: split after the last ')'.
    fields = raw[raw.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime (fields 14 and 15)


def peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def reset_peak_rss(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def core_busy_seconds() -> dict[str, float]:
    """Busy seconds of each core since boot (all processes): to see load that is not ours."""
    out = {}
    with open("/proc/stat") as fh:
        for line in fh:
            if line.startswith("cpu") and line[3].isdigit():
                name, *ticks = line.split()
                values = [int(t) for t in ticks]
                out[name] = (sum(values[:8]) - values[3] - values[4]) / _TICK  # all but idle and iowait
    return out

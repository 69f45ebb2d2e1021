#!/usr/bin/env python3
"""Which UDP sockets drop datagrams during a load run (a full receive buffer).

    benches/load/udpdrops.py OUT &  PID=$!;  benches/load/cps.sh …;  kill $PID;  cat OUT

Every 50 ms it reads the `drops` column of /proc/net/udp for each socket owned by a process
whose name starts with `sipp` or `sipmeter`, and on SIGTERM writes the highest count seen
per socket to OUT (`comm pid PID port PORT drops N`). `nstat UdpRcvbufErrors` gives the
system's total only; this tells SIPp's UAS from sipmeter's shard. Other runs on the machine
show too (their own pids and ports). Read-only: it looks at /proc and nothing else.
"""
import os
import re
import signal
import sys
import time

best = {}


def dump(*_):
    with open(sys.argv[1], "w") as f:
        for (comm, pid, port), d in sorted(best.items()):
            f.write(f"{comm} pid {pid} port {port} drops {d}\n")
    sys.exit(0)


def owners():
    """Socket inode -> (comm, pid) for the processes of interest."""
    out = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/comm") as f:
                comm = f.read().strip()
            if not comm.startswith(("sipp", "sipmeter")):
                continue
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:  # closed meanwhile
                continue
            m = re.match(r"socket:\[(\d+)\]", link)
            if m:
                out[m.group(1)] = (comm, pid)
    return out


if len(sys.argv) != 2:
    sys.exit(__doc__)
signal.signal(signal.SIGTERM, dump)
while True:
    own = owners()
    try:
        with open("/proc/net/udp") as f:
            lines = f.read().splitlines()[1:]
    except OSError:
        lines = []
    for line in lines:
        f = line.split()
        inode, drops = f[9], int(f[-1])
        if inode in own:
            key = own[inode] + (int(f[1].split(":")[1], 16),)
            best[key] = max(best.get(key, 0), drops)
    time.sleep(0.05)

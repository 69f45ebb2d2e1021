#!/usr/bin/env python3
"""Who held the CPU while a shard waited for it (docs/notes-rtpsched.md).

    perf sched record -a -- sleep 3      # while a run is in its steady state
    perf sched timehist > timehist.txt
    benches/load/sched_holders.py timehist.txt [THRESHOLD_MS]

For every switch-in of a `shard-N` thread whose run-queue delay ("sch delay") was over
THRESHOLD_MS (default 0.5), the task that ran on that CPU just before it is charged with
the delay. Prints the total and the tasks by delay (digits in names folded to N).
"""
import collections
import re
import sys


def main():
    thr = float(sys.argv[2]) if len(sys.argv) > 2 else 0.5
    last = {}
    by = collections.Counter()
    cnt = collections.Counter()
    tot = n = alld = 0.0
    row = re.compile(r'\s*([\d.]+)\s+\[(\d+)\]\s+(.+?)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s*$')
    for line in open(sys.argv[1]):
        m = row.match(line)
        if not m:
            continue
        _, cpu, task, _, delay, _ = m.groups()
        delay = float(delay)
        name = re.sub(r'\[.*', '', task).strip()
        if name.startswith('shard-'):
            alld += delay
            if delay > thr:
                prev = last.get(cpu, '?')
                by[prev] += delay
                cnt[prev] += 1
                tot += delay
                n += 1
        last[cpu] = name if name.startswith('shard-') else re.sub(r'\d+', 'N', name)
    print(f"shard switch-ins with a run-queue delay > {thr} ms: {int(n)}, {tot:.1f} ms "
          f"(all shard delays {alld:.1f} ms); by the task that ran before:")
    for k, v in by.most_common(15):
        print(f"  {v:8.1f} ms {cnt[k]:6d}  {k}")


if __name__ == '__main__':
    main()

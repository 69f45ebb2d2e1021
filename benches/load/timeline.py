#!/usr/bin/env python3
"""Reads the shards' loop timelines of one run (SIPMETER_TIMELINE=DIR, docs/notes-rtpp99.md)
and says where the RTP sends that left more than 1 ms late come from.

    benches/load/timeline.py DIR [FROM_S [TO_S]]

Prints, for the window (seconds since the process's timeline origin):
  - per second: packets sent, how many > 1 ms late, the latest, the shards' CPU and the time
    they waited for a CPU (run-queue delay), SIP datagrams read and SIP timers fired;
  - late packets by what their turn shows: the shard woke on time but waited for a CPU, was
    preempted in the pass, woke late without waiting (host or timer), or carried a backlog;
  - undisturbed passes (woken < 300 µs late without a run-queue delay, no backlog, not
    preempted): the first and the last packet's
    lateness, i.e. the loop's own part (wake-up + place in the pass);
  - late packets while the two shards ran on the same CPU vs on different ones.
"""
import bisect
import collections
import glob
import os
import sys


def load(d):
    shards = []
    for f in sorted(glob.glob(os.path.join(d, "timeline-shard*.tsv"))):
        hdr, rows = None, []
        for line in open(f):
            if line.startswith("#"):
                continue
            if hdr is None:
                hdr = line.split()
                continue
            rows.append(dict(zip(hdr, map(int, line.split()))))
        shards.append(rows)
    return shards


def q(a, p):
    return a[min(len(a) - 1, int(p * len(a)))] if a else -1


def main():
    d = sys.argv[1]
    lo = float(sys.argv[2]) * 1e6 if len(sys.argv) > 2 else 0
    hi = float(sys.argv[3]) * 1e6 if len(sys.argv) > 3 else 1e18
    shards = load(d)
    sec = collections.defaultdict(collections.Counter)
    for k, rows in enumerate(shards):
        for r in rows:
            c = sec[int(r["t_us"] / 1e6)]
            c["sent"] += r["sent"]
            c["late"] += r["late_over_1ms"]
            c["lmax"] = max(c["lmax"], r["late_max_us"])
            c[f"cpu{k}"] += r["cpu_us"]
            c[f"runq{k}"] += r["runq_us"]
            c["siprx"] += r["sip_rx"]
            c["sipT"] += r["sip_timers"]
    print("second  sent     >1ms   latest   " + "  ".join(f"cpu{k} runq{k}" for k in range(len(shards))) + "   sip rx  sip timers")
    for s in sorted(sec):
        c = sec[s]
        if not (lo <= s * 1e6 <= hi) or (c["sent"] == 0 and c["siprx"] == 0):
            continue
        per = "  ".join(f"{c[f'cpu{k}']/1e3:4.0f} {c[f'runq{k}']/1e3:5.0f}" for k in range(len(shards)))
        print(f"{s:6d} {c['sent']:7d} {c['late']:7d} {c['lmax']/1e3:6.1f}ms  {per}   {c['siprx']:6d} {c['sipT']:6d}")
    kinds = collections.Counter()
    undisturbed, sent_all, late_all = [], 0, 0
    for rows in shards:
        for a, b in zip(rows, rows[1:]):
            if not (lo <= b["t_us"] <= hi) or b["sent"] == 0:
                continue
            sent_all += b["sent"]
            late_all += b["late_over_1ms"]
            # A row's wake-up figures (woke_late, and the run-queue delay and switches
            # counted up to the next row) are those of the sleep that ends the turn: the
            # wake-up that started turn b is in row a.
            if b["late_over_1ms"]:
                if a["woke_late_us"] > 1000 and a["late_max_us"] <= 1000:
                    k = ("woken on time, waited for a CPU" if a["runq_us"] >= a["woke_late_us"] / 2
                         else "woke late without waiting for a CPU (host, timer)")
                elif b["late_min_us"] > 1000 or a["late_max_us"] > 1000:
                    k = "backlog of an earlier turn"
                elif b["ivcsw"]:
                    k = "preempted during the pass"
                else:
                    k = "long pass"
                kinds[k] += b["late_over_1ms"]
            if (a["runq_us"] == 0 and a["ivcsw"] == 0 and a["woke_late_us"] < 300
                    and a["late_max_us"] < 1000 and b["ivcsw"] == 0):
                undisturbed.append(b)
    print(f"\nsent {sent_all}, > 1 ms late {late_all} ({100 * late_all / max(1, sent_all):.2f} %); by the turn they left in:")
    for k, n in kinds.most_common():
        print(f"  {k}: {n}")
    lm = sorted(r["late_min_us"] for r in undisturbed)
    lx = sorted(r["late_max_us"] for r in undisturbed)
    mu = sorted(r["media_us"] for r in undisturbed)
    n = sorted(r["sent"] for r in undisturbed)
    print(f"undisturbed passes {len(undisturbed)} ({sum(n)} packets), packets per pass p50 {q(n, .5)}: "
          f"first packet µs p50 {q(lm, .5)} p99 {q(lm, .99)}; last packet µs p50 {q(lx, .5)} p90 {q(lx, .9)} p99 {q(lx, .99)}; "
          f"pass µs p50 {q(mu, .5)} p99 {q(mu, .99)}")
    if len(shards) == 2 and shards[0] and "cpu" in shards[0][0]:
        ts = [[r["t_us"] for r in rows] for rows in shards]
        st = {True: [0, 0], False: [0, 0]}
        for k in (0, 1):
            for r in shards[k]:
                if not (lo <= r["t_us"] <= hi) or r["sent"] == 0:
                    continue
                i = bisect.bisect_right(ts[1 - k], r["t_us"]) - 1
                if i >= 0:
                    same = shards[1 - k][i]["cpu"] == r["cpu"]
                    st[same][0] += r["sent"]
                    st[same][1] += r["late_over_1ms"]
        for same in (False, True):
            s, l = st[same]
            print(f"shards on {'one CPU' if same else 'two CPUs'}: {s} packets, > 1 ms late {l} ({100 * l / max(1, s):.2f} %)")


if __name__ == "__main__":
    main()

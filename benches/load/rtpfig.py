"""The media figures of a sipmeter run report, as benches/load/rtp.sh and rtp_sipp.sh print
them: sums of packets and loss, and jitter averaged, over every endpoint with media; MOS
averaged over the calls that were rated. A call with audio gaps or without audio has no MOS (the report
says null, "not rated"): such calls are counted, not averaged in as 0, so an overloaded run
still prints its row instead of failing."""


def media_figures(report):
    m = [e["media"] for e in report["endpoints"] if e.get("media")]
    rated = [x for x in m if x.get("mos") is not None]
    tx = sum(x["tx_packets"] or 0 for x in m)
    rx = sum(x["rx_packets"] or 0 for x in m)
    lost = sum(max(0, x["rx_lost"] or 0) for x in m)
    return {
        "tx": tx,
        "rx": rx,
        "loss_pct": 100 * lost / max(1, rx + lost),
        "mos": sum(x["mos"] for x in rated) / len(rated) if rated else 0.0,
        "min_mos": min(((x["mos_min"] or x["mos"]) for x in rated), default=0.0),
        "jitter_ms": sum(x["jitter_ms"] or 0 for x in m) / len(m) if m else 0.0,
        "max_jitter_ms": max((x["jitter_max_ms"] or 0 for x in m), default=0.0),
        "unrated": len(m) - len(rated),
    }

//! A seeded, sans-IO network impairment model (after str0m's netem): fixed delay, uniform
//! jitter, random or bursty (Gilbert–Elliott) loss, duplication and reordering. Packets go in
//! with [`Impairment::handle_packet`], come out with [`Impairment::poll_packet`] when due;
//! [`Impairment::poll_timeout`] says when. The same model drives deterministic tests on a
//! virtual clock and a UDP relay between real sockets.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// How packets are lost.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Loss {
    /// No loss.
    #[default]
    None,
    /// Independent loss with this probability.
    Random(f64),
    /// Gilbert–Elliott: a Good and a Bad state; `p` = P(Good → Bad), `r` = P(Bad → Good) per
    /// packet, and the loss probability in each state. With `loss_good` 0 and `loss_bad` 1
    /// this is the Gilbert model G.107 assumes: loss ratio p/(p+r), BurstR 1/(p+r).
    GilbertElliott {
        /// P(Good → Bad) per packet.
        p: f64,
        /// P(Bad → Good) per packet.
        r: f64,
        /// Loss probability in Good.
        loss_good: f64,
        /// Loss probability in Bad.
        loss_bad: f64,
    },
}

/// The impairment to apply.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ImpairmentConfig {
    /// Fixed one-way delay.
    pub delay: Duration,
    /// Extra delay, uniform in [0, jitter] per packet (packets may overtake each other when
    /// this exceeds their spacing).
    pub jitter: Duration,
    /// Loss model.
    pub loss: Loss,
    /// Probability that a packet is sent twice (the copy 1 ms later).
    pub duplicate: f64,
    /// Probability that a packet is held back by `reorder_delay` extra.
    pub reorder: f64,
    /// How long a reordered packet is held.
    pub reorder_delay: Duration,
    /// RNG seed.
    pub seed: u64,
}

/// What the model did so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ImpairmentStats {
    /// Packets offered.
    pub offered: u64,
    /// Packets dropped.
    pub dropped: u64,
    /// Extra copies made.
    pub duplicated: u64,
    /// Packets held back for reordering.
    pub reordered: u64,
    /// Packets handed out.
    pub delivered: u64,
}

/// The model. `T` is whatever travels (bytes, or bytes with an address).
#[derive(Debug)]
pub struct Impairment<T> {
    cfg: ImpairmentConfig,
    rng: SmallRng,
    bad: bool,
    order: u64,
    queue: BinaryHeap<Reverse<(Instant, u64)>>,
    items: std::collections::HashMap<u64, T>,
    stats: ImpairmentStats,
}

impl<T: Clone> Impairment<T> {
    /// A model with this configuration.
    pub fn new(cfg: ImpairmentConfig) -> Self {
        Impairment {
            rng: SmallRng::seed_from_u64(cfg.seed),
            cfg,
            bad: false,
            order: 0,
            queue: BinaryHeap::new(),
            items: std::collections::HashMap::new(),
            stats: ImpairmentStats::default(),
        }
    }

    /// Counters.
    pub fn stats(&self) -> ImpairmentStats {
        self.stats
    }

    fn lost(&mut self) -> bool {
        match self.cfg.loss {
            Loss::None => false,
            Loss::Random(p) => self.rng.random::<f64>() < p,
            Loss::GilbertElliott {
                p,
                r,
                loss_good,
                loss_bad,
            } => {
                // Move first, then draw the loss of the state we are in.
                let flip = self.rng.random::<f64>();
                self.bad = if self.bad { flip >= r } else { flip < p };
                let l = if self.bad { loss_bad } else { loss_good };
                self.rng.random::<f64>() < l
            }
        }
    }

    fn push(&mut self, at: Instant, item: T) {
        self.order += 1;
        self.queue.push(Reverse((at, self.order)));
        self.items.insert(self.order, item);
    }

    /// Offers a packet sent at `now`.
    pub fn handle_packet(&mut self, now: Instant, item: T) {
        self.stats.offered += 1;
        if self.lost() {
            self.stats.dropped += 1;
            return;
        }
        let mut at = now + self.cfg.delay;
        if !self.cfg.jitter.is_zero() {
            at += self.cfg.jitter.mul_f64(self.rng.random::<f64>());
        }
        if self.cfg.reorder > 0.0 && self.rng.random::<f64>() < self.cfg.reorder {
            self.stats.reordered += 1;
            at += self.cfg.reorder_delay;
        }
        if self.cfg.duplicate > 0.0 && self.rng.random::<f64>() < self.cfg.duplicate {
            self.stats.duplicated += 1;
            self.push(at + Duration::from_millis(1), item.clone());
        }
        self.push(at, item);
    }

    /// When the next packet is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.queue.peek().map(|Reverse((at, _))| *at)
    }

    /// The next packet due at `now` (earliest first, then in the order offered).
    pub fn poll_packet(&mut self, now: Instant) -> Option<T> {
        let Reverse((at, order)) = *self.queue.peek()?;
        if at > now {
            return None;
        }
        self.queue.pop();
        self.stats.delivered += 1;
        self.items.remove(&order)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drive(cfg: ImpairmentConfig, n: u32) -> (Vec<(u32, Duration)>, ImpairmentStats) {
        let t0 = Instant::now();
        let mut m = Impairment::new(cfg);
        let mut out = Vec::new();
        for i in 0..n {
            let now = t0 + Duration::from_millis(20 * u64::from(i));
            m.handle_packet(now, i);
            while let Some(x) = m.poll_packet(now) {
                out.push((x, now - t0));
            }
        }
        while let Some(at) = m.poll_timeout() {
            while let Some(x) = m.poll_packet(at) {
                out.push((x, at - t0));
            }
        }
        (out, m.stats())
    }

    #[test]
    fn delay_only_keeps_order_and_timing() {
        let cfg = ImpairmentConfig {
            delay: Duration::from_millis(30),
            ..ImpairmentConfig::default()
        };
        let (out, st) = drive(cfg, 100);
        assert_eq!(out.len(), 100);
        assert!(out.iter().enumerate().all(|(i, (x, _))| *x == i as u32));
        // Due 30 ms after sending; polled at the next send instant or at its timeout.
        assert_eq!(out[99].1, Duration::from_millis(99 * 20 + 30));
        assert_eq!((st.offered, st.delivered, st.dropped), (100, 100, 0));
    }

    #[test]
    fn random_loss_rate() {
        let cfg = ImpairmentConfig {
            loss: Loss::Random(0.05),
            seed: 3,
            ..ImpairmentConfig::default()
        };
        let (out, st) = drive(cfg, 20_000);
        // σ = √(20000·0.05·0.95) = 31 packets: within 3σ of 1000.
        assert!((st.dropped as i64 - 1000).abs() < 93, "{}", st.dropped);
        assert_eq!(out.len() as u64, 20_000 - st.dropped);
    }

    #[test]
    fn gilbert_bursts() {
        // p = 0.01, r = 0.25: loss ratio p/(p+r) = 3.85 %, mean burst 1/r = 4 packets.
        let cfg = ImpairmentConfig {
            loss: Loss::GilbertElliott {
                p: 0.01,
                r: 0.25,
                loss_good: 0.0,
                loss_bad: 1.0,
            },
            seed: 8,
            ..ImpairmentConfig::default()
        };
        let (out, st) = drive(cfg, 100_000);
        let ratio = st.dropped as f64 / 100_000.0;
        assert!((ratio - 0.0385).abs() < 0.004, "{ratio}");
        // Mean burst length from the delivered sequence.
        let got: Vec<u32> = out.iter().map(|x| x.0).collect();
        let bursts = got.windows(2).filter(|w| w[1] - w[0] > 1).count();
        let mean_burst = st.dropped as f64 / bursts as f64;
        assert!((mean_burst - 4.0).abs() < 0.3, "{mean_burst}");
    }

    #[test]
    fn duplicates_and_reordering() {
        let cfg = ImpairmentConfig {
            delay: Duration::from_millis(10),
            duplicate: 0.1,
            reorder: 0.1,
            reorder_delay: Duration::from_millis(50),
            seed: 4,
            ..ImpairmentConfig::default()
        };
        let (out, st) = drive(cfg, 1000);
        assert_eq!(out.len() as u64, 1000 + st.duplicated);
        assert!(
            st.duplicated > 60 && st.duplicated < 140,
            "{}",
            st.duplicated
        );
        assert!(st.reordered > 60 && st.reordered < 140, "{}", st.reordered);
        let overtaken = out.windows(2).filter(|w| w[1].0 < w[0].0).count();
        assert!(overtaken > 0);
    }

    #[test]
    fn jitter_within_bounds() {
        let cfg = ImpairmentConfig {
            delay: Duration::from_millis(10),
            jitter: Duration::from_millis(15),
            seed: 6,
            ..ImpairmentConfig::default()
        };
        let t0 = Instant::now();
        let mut m = Impairment::new(cfg);
        for i in 0..1000u64 {
            m.handle_packet(t0 + Duration::from_millis(20 * i), i);
        }
        let mut last = t0;
        let mut n = 0;
        while let Some(at) = m.poll_timeout() {
            let x = m.poll_packet(at).unwrap();
            let sent = t0 + Duration::from_millis(20 * x);
            assert!(
                at - sent >= Duration::from_millis(10) && at - sent <= Duration::from_millis(25)
            );
            assert!(at >= last);
            last = at;
            n += 1;
        }
        assert_eq!(n, 1000);
    }
}

//! Choosing accounts from a pool for one run (pure and deterministic: the caller passes the
//! seed, so a run's choice can be replayed).

use serde::Serialize;

/// How a pool hands out accounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// The first N accounts by username, every run.
    Sequential,
    /// Continues where the previous run stopped, wrapping around.
    RoundRobin,
    /// N distinct accounts chosen at random (seeded).
    Random,
    /// The N accounts unused for the longest time (never used first).
    LeastRecentlyUsed,
}

impl Strategy {
    /// Every strategy.
    pub const ALL: [Strategy; 4] = [
        Strategy::Sequential,
        Strategy::RoundRobin,
        Strategy::Random,
        Strategy::LeastRecentlyUsed,
    ];

    /// The stored (and API) name.
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Sequential => "sequential",
            Strategy::RoundRobin => "round_robin",
            Strategy::Random => "random",
            Strategy::LeastRecentlyUsed => "least_recently_used",
        }
    }

    /// Parses a name.
    pub fn parse(s: &str) -> Option<Strategy> {
        Strategy::ALL.into_iter().find(|x| x.as_str() == s.trim())
    }
}

/// A pool has fewer accounts than a run needs: the run cannot start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the pool has {have} account(s) but the run needs {need}")]
pub struct NotEnoughAccounts {
    /// Accounts in the pool.
    pub have: usize,
    /// Accounts needed.
    pub need: usize,
}

/// One candidate: (account id, last use in unix ms). Candidates come ordered by username.
pub type Candidate = (i64, Option<i64>);

/// splitmix64: a small, well-mixed generator for the seeded shuffle.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Picks `n` distinct accounts; returns them and the pool's next round-robin position.
pub fn pick(
    strategy: Strategy,
    candidates: &[Candidate],
    n: usize,
    next_index: usize,
    seed: u64,
) -> Result<(Vec<i64>, usize), NotEnoughAccounts> {
    let have = candidates.len();
    if n > have {
        return Err(NotEnoughAccounts { have, need: n });
    }
    if have == 0 {
        return Ok((Vec::new(), 0));
    }
    let ids: Vec<i64> = match strategy {
        Strategy::Sequential => candidates.iter().take(n).map(|c| c.0).collect(),
        Strategy::RoundRobin => (0..n)
            .map(|i| candidates[(next_index + i) % have].0)
            .collect(),
        Strategy::Random => {
            // Partial Fisher–Yates: the first n slots end up a uniform sample.
            let mut ids: Vec<i64> = candidates.iter().map(|c| c.0).collect();
            let mut state = seed;
            for i in 0..n {
                let span = (have - i) as u64;
                // `span` is at least 1 here (i < n <= have), and the result is below it.
                let j = i + usize::try_from(splitmix(&mut state) % span).unwrap_or(0);
                ids.swap(i, j);
            }
            ids.truncate(n);
            ids
        }
        Strategy::LeastRecentlyUsed => {
            let mut order: Vec<(usize, &Candidate)> = candidates.iter().enumerate().collect();
            // Never used first (None < Some), then oldest use, then username order.
            order.sort_by_key(|(i, c)| (c.1, *i));
            order.into_iter().take(n).map(|(_, c)| c.0).collect()
        }
    };
    let next = match strategy {
        Strategy::RoundRobin => (next_index + n) % have,
        _ => next_index % have,
    };
    Ok((ids, next))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(n: i64) -> Vec<Candidate> {
        (1..=n).map(|i| (i, None)).collect()
    }

    #[test]
    fn sequential_and_round_robin() {
        assert_eq!(
            pick(Strategy::Sequential, &c(5), 2, 3, 0).unwrap(),
            (vec![1, 2], 3)
        );
        let (a, next) = pick(Strategy::RoundRobin, &c(5), 3, 0, 0).unwrap();
        assert_eq!((a, next), (vec![1, 2, 3], 3));
        let (b, next) = pick(Strategy::RoundRobin, &c(5), 3, next, 0).unwrap();
        assert_eq!(
            (b, next),
            (vec![4, 5, 1], 1),
            "wraps around, distinct within a run"
        );
        assert_eq!(
            pick(Strategy::RoundRobin, &c(5), 5, 4, 0).unwrap().0,
            vec![5, 1, 2, 3, 4]
        );
    }

    #[test]
    fn random_is_seeded_distinct_and_covers_the_pool() {
        let (a, _) = pick(Strategy::Random, &c(100), 10, 0, 42).unwrap();
        let (b, _) = pick(Strategy::Random, &c(100), 10, 0, 42).unwrap();
        let (d, _) = pick(Strategy::Random, &c(100), 10, 0, 43).unwrap();
        assert_eq!(a, b, "same seed, same choice");
        assert_ne!(a, d);
        let mut sorted = a.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 10, "distinct");
        // Over many seeds every account gets picked, roughly evenly (10 of 100 per draw).
        let mut hits = [0u32; 100];
        for seed in 0..2000 {
            for id in pick(Strategy::Random, &c(100), 10, 0, seed).unwrap().0 {
                hits[usize::try_from(id - 1).unwrap()] += 1;
            }
        }
        // Expected 200 each; a binomial(2000, 0.1) stays within 200 ± 60 (> 4.4 sigma).
        assert!(hits.iter().all(|&h| (140..=260).contains(&h)), "{hits:?}");
    }

    #[test]
    fn least_recently_used_prefers_never_used_then_oldest() {
        let cands = vec![
            (1, Some(300)),
            (2, None),
            (3, Some(100)),
            (4, Some(200)),
            (5, None),
        ];
        assert_eq!(
            pick(Strategy::LeastRecentlyUsed, &cands, 4, 0, 0)
                .unwrap()
                .0,
            vec![2, 5, 3, 4]
        );
    }

    #[test]
    fn too_few_accounts_say_so() {
        let e = pick(Strategy::Sequential, &c(3), 4, 0, 0).unwrap_err();
        assert_eq!(e, NotEnoughAccounts { have: 3, need: 4 });
        assert_eq!(
            e.to_string(),
            "the pool has 3 account(s) but the run needs 4"
        );
        assert_eq!(pick(Strategy::Random, &[], 0, 7, 1).unwrap(), (vec![], 0));
    }
}

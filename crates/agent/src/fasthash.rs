//! A cheap hasher for a shard's own lookup tables (endpoint by user).
//!
//! The standard `HashMap` hashes with SipHash, which resists keys chosen to collide; a
//! shard looks up a key or two per message (1.7 % of a 2,000 calls/s run's CPU went to
//! SipHash). The keys here are our own users (only looked up, never inserted, with the
//! server's text), so a word-at-a-time multiply-rotate hash (the Firefox/rustc "Fx" hash)
//! is enough. The Call-ID routes, whose keys include the server's Call-IDs, use a hash keyed
//! per run instead (`routes::RouteHasher`): this one is unkeyed, so anyone can search
//! offline for keys that share a bucket.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A `HashMap` with [`FxHasher`].
pub type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// The Fx hash (for each word, `(h.rotate_left(5) ^ word) * K`), finalised.
#[derive(Debug, Default, Clone, Copy)]
pub struct FxHasher {
    hash: u64,
}

const K: u64 = 0xf135_7aea_2e62_a9c5;

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(K);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            // This is ok because `chunks_exact(8)` yields 8-byte slices.
            self.add(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut last = [0u8; 8];
            last[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(last));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        // A multiply carries a word's high bytes only upwards, and the table picks buckets by
        // the low bits: MurmurHash3's 64-bit finaliser (fmix64) spreads every bit over all.
        let mut h = self.hash;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_what_was_put_and_tells_near_keys_apart() {
        let mut m: FastMap<String, usize> = FastMap::default();
        let keys: Vec<String> = (0..10_000)
            .map(|i| format!("{i:016x}@127.0.0.1"))
            .chain((0..300).map(|i| "x".repeat(i)))
            .collect();
        for (i, k) in keys.iter().enumerate() {
            assert!(m.insert(k.clone(), i).is_none(), "{k} is new");
        }
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(m.get(k.as_str()), Some(&i));
        }
        assert_eq!(m.get("nobody@127.0.0.1"), None);
    }

    #[test]
    fn short_keys_spread_over_the_buckets() {
        // Call-IDs differing in one character must not pile up in a few buckets (random
        // hashes give about 650 distinct values of 1,024 here).
        let mut low = std::collections::HashSet::new();
        for i in 0..1024u32 {
            let mut h = FxHasher::default();
            h.write(format!("call-{i}").as_bytes());
            low.insert(h.finish() & 1023);
        }
        assert!(low.len() > 500, "{} distinct low-10-bit values", low.len());
    }
}

//! Seeded decisions: every random choice of the proxy comes from a generator derived
//! from the server seed and the identity of what decides, so a run replays.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The generator a toxic uses on one connection.
pub(crate) type DecisionRng = ChaCha8Rng;

/// What identifies one toxic's decisions on one connection.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DecisionKey<'a> {
    /// The server seed (`--seed`).
    pub seed: u64,
    /// The proxy's name.
    pub proxy: &'a str,
    /// The connection's ordinal on its proxy, from 0 in accept order.
    pub connection: u64,
    /// The toxic's name.
    pub toxic: &'a str,
    /// How often the toxic was updated.
    pub revision: u64,
}

impl DecisionKey<'_> {
    /// A generator whose stream depends only on this key.
    pub(crate) fn rng(&self) -> DecisionRng {
        let mut h = splitmix(self.seed);
        h = splitmix(h ^ fnv1a(self.proxy.as_bytes()));
        h = splitmix(h ^ self.connection);
        h = splitmix(h ^ fnv1a(self.toxic.as_bytes()));
        h = splitmix(h ^ self.revision);
        ChaCha8Rng::seed_from_u64(h)
    }
}

/// FNV-1a, stable across Rust versions (unlike `DefaultHasher`).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3))
}

fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    fn key(seed: u64, connection: u64) -> DecisionKey<'static> {
        DecisionKey { seed, proxy: "p", connection, toxic: "t", revision: 0 }
    }

    #[test]
    fn same_key_same_stream_and_keys_differ() {
        let a: Vec<u32> = (0..4).map(|_| 0).scan(key(1, 0).rng(), |r, _: u32| Some(r.random())).collect();
        let b: Vec<u32> = (0..4).map(|_| 0).scan(key(1, 0).rng(), |r, _: u32| Some(r.random())).collect();
        assert_eq!(a, b);
        assert_ne!(key(1, 0).rng().random::<u64>(), key(2, 0).rng().random::<u64>());
        assert_ne!(key(1, 0).rng().random::<u64>(), key(1, 1).rng().random::<u64>());
    }
}

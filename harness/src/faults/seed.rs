//! Seeded decisions: every random choice of the proxy comes from a generator derived
//! from the server seed and the identity of what decides, so a run replays.

use std::collections::HashMap;
use std::sync::Mutex;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The most distinct requests whose occurrences one toxic counts; a request first seen
/// after that counts as a first occurrence every time (still the same decision for
/// the same request, whatever the interleaving).
const MAX_DIGESTS: usize = 100_000;

/// The generator a toxic uses on one connection.
pub(crate) type DecisionRng = ChaCha8Rng;

/// What identifies one toxic's decisions on one connection, for the bytes that belong
/// to no known HTTP request (every byte of a link that is not HTTP/1.1).
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

/// What identifies one toxic's decision on one HTTP request, whichever connection
/// carries it: the request's digest and how often that digest came before. HTTP toxics
/// and, on links carrying HTTP/1.1, TCP toxics decide with it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RequestKey<'a> {
    /// The server seed (`--seed`).
    pub seed: u64,
    /// The proxy's name.
    pub proxy: &'a str,
    /// The toxic's name.
    pub toxic: &'a str,
    /// How often the toxic was updated.
    pub revision: u64,
    /// The [`request_digest`] of the request.
    pub digest: u64,
    /// How many requests with this digest the toxic saw before on this proxy.
    pub occurrence: u64,
}

impl RequestKey<'_> {
    /// A generator whose stream depends only on this key.
    pub(crate) fn rng(&self) -> DecisionRng {
        let mut h = splitmix(self.seed ^ 0x5245_5155_4553_5400);
        h = splitmix(h ^ fnv1a(self.proxy.as_bytes()));
        h = splitmix(h ^ fnv1a(self.toxic.as_bytes()));
        h = splitmix(h ^ self.revision);
        h = splitmix(h ^ self.digest);
        h = splitmix(h ^ self.occurrence);
        ChaCha8Rng::seed_from_u64(h)
    }
}

/// A request's identity for decisions: its method, its target and, when it has one,
/// its idempotency key or request id.
pub(crate) fn request_digest(method: &str, target: &str, id: Option<&str>) -> u64 {
    let mut h = fnv1a(method.to_ascii_uppercase().as_bytes());
    h = splitmix(h ^ fnv1a(target.as_bytes()));
    splitmix(h ^ id.map_or(0, |id| fnv1a(id.as_bytes())))
}

/// How often each request digest came to one toxic of one proxy.
#[derive(Debug, Default)]
pub(crate) struct Occurrences {
    seen: Mutex<HashMap<u64, u64>>,
}

impl Occurrences {
    /// The number of earlier requests with `digest`, counting this one from now on.
    pub(crate) fn next(&self, digest: u64) -> u64 {
        let Ok(mut seen) = self.seen.lock() else {
            return 0;
        };
        if seen.len() >= MAX_DIGESTS && !seen.contains_key(&digest) {
            return 0;
        }
        let count = seen.entry(digest).or_insert(0);
        *count += 1;
        *count - 1
    }
}

/// A draw in `0..bound` that depends only on `key` and `offset`.
pub(crate) fn draw_at(key: u64, offset: u64, bound: u64) -> u64 {
    if bound == 0 {
        return 0;
    }
    splitmix(key ^ splitmix(offset)) % bound
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

    #[test]
    fn occurrences_count_per_digest() {
        let o = Occurrences::default();
        assert_eq!([o.next(7), o.next(8), o.next(7), o.next(7)], [0, 0, 1, 2]);
        let a = request_digest("get", "/a", None);
        assert_eq!(a, request_digest("GET", "/a", None));
        assert_ne!(a, request_digest("GET", "/a", Some("k1")));
        assert_ne!(a, request_digest("GET", "/b", None));
    }
}

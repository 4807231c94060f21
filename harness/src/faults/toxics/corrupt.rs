//! `corrupt`: flips one bit in bytes chosen at random, each byte with probability
//! `rate`: what damage that passed the TCP checksum (or a broken middlebox) does to a
//! stream. Which bytes are chosen depends only on the toxic's seed and the byte's offset
//! among the bytes it may corrupt, not on how they were split into reads, so a seed
//! replays the same flips; on a link carrying HTTP/1.1 each request and response draws
//! from its own key (see `by_request`).
//!
//! With `spare_head`, the head of each request or response (its request or status line
//! and headers, up to the blank line) passes intact and only what follows is corrupted,
//! so the damage lands in bodies (the size lines of a chunked body included). A link
//! that is not HTTP has no head: all of it may be corrupted.

use bytes::{Bytes, BytesMut};
use rand::Rng;

use super::effects::EffectSink;
use super::{Event, Stage, Timed};
use crate::faults::seed::{draw_at, DecisionRng};

/// Salt of the draws of which bit to flip, apart from the draws of where.
const BIT_SALT: u64 = 0xb17f_11b5;

/// The end of an HTTP head.
const HEAD_END: &[u8; 4] = b"\r\n\r\n";

/// The longest head spared: bytes past it are taken as body (a head this long is not
/// HTTP any server here reads).
const MAX_HEAD: u64 = 64 * 1024;

/// Where the flips of a stream fall: the offsets, among the bytes that may be
/// corrupted, of the bytes flipped, drawn one gap at a time.
#[derive(Clone, Debug)]
pub struct FlipDraws {
    rate: f64,
    key: u64,
    /// Flips drawn so far.
    drawn: u64,
    /// The offset of the next byte to flip, `None` when no byte ever is.
    next: Option<u64>,
}

impl FlipDraws {
    /// The flips of a stream keyed by `key`, each byte flipped with probability `rate`.
    pub fn new(rate: f64, key: u64) -> Self {
        let mut this = Self { rate, key, drawn: 0, next: None };
        this.next = this.gap();
        this
    }

    /// The gap before the next flipped byte: geometric with the rate, so each byte is
    /// flipped independently with it.
    fn gap(&mut self) -> Option<u64> {
        if self.rate <= 0.0 {
            return None;
        }
        if self.rate >= 1.0 {
            return Some(0);
        }
        const SCALE: u64 = 1 << 53;
        let u = (draw_at(self.key, self.drawn, SCALE) + 1) as f64 / SCALE as f64;
        self.drawn += 1;
        // `as` saturates: a gap past u64::MAX is as good as never.
        Some((u.ln() / (1.0 - self.rate).ln()).floor() as u64)
    }

    /// Flips bytes of `bytes`, which start at `offset` among the corruptible bytes; the
    /// number flipped.
    pub fn apply(&mut self, offset: u64, bytes: &mut [u8]) -> u64 {
        let end = offset.saturating_add(bytes.len() as u64);
        let mut flipped = 0;
        while let Some(next) = self.next.filter(|n| *n < end) {
            // Offsets only grow, so `next >= offset`: it was drawn past the bytes before.
            let i = usize::try_from(next - offset).unwrap_or(usize::MAX);
            if let Some(byte) = bytes.get_mut(i) {
                *byte ^= 1 << draw_at(self.key ^ BIT_SALT, next, 8);
                flipped += 1;
            }
            self.next = self.gap().and_then(|g| next.checked_add(g + 1));
        }
        flipped
    }
}

/// The corrupt toxic on one direction of one connection (or one HTTP exchange).
pub(super) struct Corrupt {
    flips: FlipDraws,
    /// Bytes that may be corrupted, seen so far.
    offset: u64,
    /// While an HTTP head passes: how many bytes of [`HEAD_END`] were matched, and the
    /// head's length so far.
    head: Option<(usize, u64)>,
    effects: EffectSink,
}

impl Corrupt {
    /// `spare_head`: the bytes start with an HTTP head to leave intact.
    pub(super) fn new(rate: f64, spare_head: bool, mut rng: DecisionRng, effects: EffectSink) -> Self {
        Self { flips: FlipDraws::new(rate, rng.random()), offset: 0, head: spare_head.then_some((0, 0)), effects }
    }

    /// How many leading bytes of `data` belong to the head still passing.
    fn head_len(&mut self, data: &[u8]) -> usize {
        let Some((mut matched, mut len)) = self.head else {
            return 0;
        };
        for (i, b) in data.iter().enumerate() {
            matched = if *b == HEAD_END[matched] { matched + 1 } else { usize::from(*b == HEAD_END[0]) };
            len += 1;
            if matched == HEAD_END.len() || len >= MAX_HEAD {
                self.head = None;
                return i + 1;
            }
        }
        self.head = Some((matched, len));
        data.len()
    }
}

impl Stage for Corrupt {
    fn on_event(&mut self, input: Timed, out: &mut Vec<Timed>) {
        let Event::Data(data) = &input.event else {
            out.push(input);
            return;
        };
        let spared = self.head_len(data);
        let body = (data.len() - spared) as u64;
        let next = self.flips.next;
        if body == 0 || next.is_none_or(|n| n >= self.offset.saturating_add(body)) {
            self.offset = self.offset.saturating_add(body);
            out.push(input);
            return;
        }
        let mut bytes = BytesMut::from(&data[..]);
        let flipped = self.flips.apply(self.offset, &mut bytes[spared..]);
        self.offset = self.offset.saturating_add(body);
        self.effects.bytes_flipped(flipped);
        out.push(Timed { event: Event::Data(Bytes::from(bytes)), ..input });
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::super::loss::joined;
    use super::*;
    use crate::faults::seed::DecisionKey;

    fn rng(seed: u64) -> DecisionRng {
        DecisionKey { seed, proxy: "p", connection: 0, toxic: "corrupt", revision: 0 }.rng()
    }

    fn corrupt(rate: f64, spare_head: bool, seed: u64, reads: &[&[u8]]) -> Bytes {
        let t0 = Instant::now();
        let mut stage = Corrupt::new(rate, spare_head, rng(seed), EffectSink::discard());
        let mut out = Vec::new();
        for read in reads {
            stage.on_event(Timed::new(t0, Event::Data(Bytes::copy_from_slice(read))), &mut out);
        }
        joined(&out)
    }

    fn differing(a: &[u8], b: &[u8]) -> Vec<usize> {
        a.iter().zip(b).enumerate().filter(|(_, (x, y))| x != y).map(|(i, _)| i).collect()
    }

    #[test]
    fn bytes_are_flipped_at_the_rate_one_bit_each() {
        let data = vec![0x55u8; 100_000];
        let out = corrupt(0.01, false, 4, &[&data]);
        let flipped = differing(&data, &out);
        // Binomial(100000, 0.01): 1000 ± 4 standard deviations (about 31 each).
        assert!((876..=1124).contains(&flipped.len()), "{} bytes flipped at 0.01", flipped.len());
        assert!(flipped.iter().all(|i| (data[*i] ^ out[*i]).count_ones() == 1), "more than one bit in a byte");
        assert_eq!(corrupt(0.0, false, 4, &[&data]), data, "rate 0 flipped a byte");
        assert_eq!(differing(&data, &corrupt(1.0, false, 4, &[&data])).len(), data.len(), "rate 1 spared a byte");
    }

    #[test]
    fn the_same_seed_flips_the_same_bytes_however_the_reads_are_split() {
        let data: Vec<u8> = (0..20_000u32).map(|i| i as u8).collect();
        let whole = corrupt(0.005, false, 9, &[&data]);
        let split: Vec<&[u8]> = data.chunks(777).collect();
        assert_eq!(whole, corrupt(0.005, false, 9, &split), "the split of the reads changed the flips");
        assert_ne!(whole, corrupt(0.005, false, 10, &[&data]), "another seed flipped the same bytes");
        assert_ne!(whole, data);
    }

    #[test]
    fn spare_head_leaves_the_head_intact_and_corrupts_the_body() {
        let head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2000\r\n\r\n";
        let body = vec![b'7'; 2000];
        // The head ends across two reads: "\r\n" | "\r\n".
        let cut = head.len() - 2;
        let out = corrupt(0.05, true, 2, &[&head[..cut], &head[cut..], &body]);
        assert_eq!(&out[..head.len()], &head[..], "the head was corrupted");
        let flipped = differing(&body, &out[head.len()..]).len();
        assert!((50..=150).contains(&flipped), "{flipped} body bytes flipped at 0.05");
        let unspared = corrupt(0.05, false, 2, &[head, &body]);
        assert_ne!(&unspared[..head.len()], &head[..], "without spare_head the head is fair game");
    }

    #[test]
    fn flips_are_counted() {
        let effects = std::sync::Arc::new(super::super::effects::ToxicEffects::default());
        let sink = effects.sink(crate::faults::model::Stream::Downstream);
        let mut stage = Corrupt::new(0.01, false, rng(1), sink);
        let data = vec![0u8; 50_000];
        let mut out = Vec::new();
        stage.on_event(Timed::new(Instant::now(), Event::Data(Bytes::from(data.clone()))), &mut out);
        let flipped = differing(&data, &joined(&out)).len() as u64;
        assert!(flipped > 0);
        assert_eq!(effects.flipped(crate::faults::model::Stream::Downstream), flipped);
    }
}

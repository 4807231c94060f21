//! The Wing–Gong–Lowe search for a linearization of a concurrent history, with Lowe's
//! cache of configurations already explored (as Porcupine does it; our own code).
//!
//! The calls' invocations and completions are events in time order, in a doubly linked
//! list. The search walks the list from its head: at an invocation it tries to apply
//! that call to the model next; if the model accepts it and the configuration (the set
//! of calls applied, the model's state) is new, it lifts the call out of the list and
//! starts again from the head; at a completion whose call was not applied yet, no call
//! pending can come next, so it backtracks: it puts the last call back and tries the
//! one after it. The history is linearizable when every call that completed has been
//! applied.
//!
//! A call that never completed (`info`) may take effect at any time after its
//! invocation, or never: its completion is at infinity, after every other event, and
//! it need not be applied at all.
//!
//! The set of calls applied is a bitset stored in the cache compactly: the calls are
//! numbered in invocation order, so it is "every call below `prefix`" plus a short
//! window above it; indeterminate calls, which never leave the window, have bits of
//! their own.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hash};

use super::FastHasher;

/// The most memory the cache of explored configurations may take on one search; past
/// it the search stops and says so.
pub(super) const MAX_CACHE_BYTES: usize = 512 << 20;
/// How many calls of the longest linearizable prefix a counterexample names.
const MAX_TAIL: usize = 3;
/// How many pending calls a counterexample names.
const MAX_PENDING: usize = 4;

/// A sequential object a history is checked against.
pub(super) trait Sequential {
    /// Its state: small, compared and hashed for the cache.
    type State: Copy + Eq + Hash;
    /// A call with its answer (a read with the value it returned).
    type Input;
    /// The state before any call.
    fn init(&self) -> Self::State;
    /// The state after `input`, or `None` if the object could not have answered so.
    fn step(&self, state: Self::State, input: &Self::Input) -> Option<Self::State>;
}

/// One call of a concurrent history.
#[derive(Debug)]
pub(super) struct Call<I> {
    pub input: I,
    pub invoke_ns: u64,
    /// `None`: indeterminate; it may take effect at any time after its invocation, or never.
    pub complete_ns: Option<u64>,
}

/// Why a search stopped before it could tell.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Bound {
    /// It tried this many steps.
    States(u64),
    /// Its cache reached this many bytes.
    Memory(usize),
}

/// Where the search got stuck, for a counterexample.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Stuck<S> {
    /// How many calls the longest linearizable prefix found holds.
    pub linearized: usize,
    /// Its last calls (indexes into the calls), oldest first.
    pub tail: Vec<usize>,
    /// The model's state after it.
    pub state: S,
    /// The call that completed before it could be applied after that prefix.
    pub blocked: usize,
    /// Other calls pending at that point, none of which could come next either.
    pub pending: Vec<usize>,
}

/// What the search found.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Outcome<S> {
    Linearizable {
        explored: u64,
    },
    Nonlinearizable(Stuck<S>),
    /// It stopped at `bound`; `stuck` is the deepest dead end it had found by then.
    Bounded {
        explored: u64,
        bound: Bound,
        stuck: Option<Stuck<S>>,
    },
}

/// Searches for a linearization of `calls` against `model`, trying at most
/// `max_states` steps.
pub(super) fn search<M: Sequential>(model: &M, calls: &[Call<M::Input>], max_states: u64) -> Outcome<M::State> {
    assert!(calls.len() < NONE as usize / 2, "too many calls for one search");
    let mut events = Events::new(calls);
    let (bit, mut applied) = Applied::layout(calls);
    let mut cache: HashSet<Key<M::State>, BuildHasherDefault<FastHasher>> = HashSet::default();
    // What the cache's keys hold on the heap; its table is counted by its capacity.
    let mut key_bytes = 0usize;
    let mut scratch = Key { prefix: 0, state: model.init(), words: Vec::new() };
    let mut stack: Vec<(u32, M::State)> = Vec::new();
    let mut state = model.init();
    let mut explored = 0u64;
    let mut stuck: Option<Stuck<M::State>> = None;
    let mut node = events.first();
    loop {
        if node == NONE {
            debug_assert_eq!(applied.prefix, applied.finite, "every call that completed is applied");
            return Outcome::Linearizable { explored };
        }
        let n = events.nodes[node as usize];
        let call = n.call as usize;
        if n.ret != NONE {
            explored += 1;
            if explored > max_states {
                return Outcome::Bounded { explored: max_states, bound: Bound::States(max_states), stuck };
            }
            if let Some(next) = model.step(state, &calls[call].input) {
                applied.set(bit[call]);
                applied.key_into(next, &mut scratch);
                if !cache.contains(&scratch) {
                    key_bytes += scratch.heap_bytes();
                    cache.insert(scratch.clone());
                    if key_bytes + cache.capacity() * Key::<M::State>::SLOT_BYTES > MAX_CACHE_BYTES {
                        return Outcome::Bounded { explored, bound: Bound::Memory(MAX_CACHE_BYTES), stuck };
                    }
                    stack.push((node, state));
                    state = next;
                    events.lift(node);
                    node = events.first();
                    continue;
                }
                applied.clear(bit[call]);
            }
            node = n.next;
        } else if calls[call].complete_ns.is_none() {
            // Only indeterminate calls, which need not happen, are left.
            debug_assert_eq!(applied.prefix, applied.finite, "every call that completed is applied");
            return Outcome::Linearizable { explored };
        } else {
            if stuck.as_ref().is_none_or(|s| stack.len() > s.linearized) {
                stuck = Some(Stuck {
                    linearized: stack.len(),
                    tail: stack.iter().rev().take(MAX_TAIL).rev().map(|&(n, _)| events.call_of(n)).collect(),
                    state,
                    blocked: call,
                    pending: events.pending_before(node, MAX_PENDING),
                });
            }
            let Some((top, before)) = stack.pop() else {
                return Outcome::Nonlinearizable(stuck.expect("recorded at this dead end"));
            };
            state = before;
            applied.clear(bit[events.call_of(top)]);
            events.unlift(top);
            node = events.nodes[top as usize].next;
        }
    }
}

/// The end of the list, and "no return" for a return node.
const NONE: u32 = u32::MAX;

#[derive(Clone, Copy)]
struct Node {
    call: u32,
    /// For an invocation, its completion's node; `NONE` for a completion.
    ret: u32,
    prev: u32,
    next: u32,
}

/// The invocations and completions in time order, as a list calls are lifted out of
/// and put back into (node 0 is the head).
struct Events {
    nodes: Vec<Node>,
}

impl Events {
    fn new<I>(calls: &[Call<I>]) -> Self {
        // At equal times invocations come first: calls that touch are concurrent.
        let mut events: Vec<(u64, bool, u32)> = Vec::with_capacity(calls.len() * 2);
        for (i, c) in calls.iter().enumerate() {
            let complete = c.complete_ns.unwrap_or(u64::MAX).max(c.invoke_ns);
            events.push((c.invoke_ns, false, i as u32));
            events.push((complete, true, i as u32));
        }
        events.sort_unstable();
        let mut nodes = Vec::with_capacity(events.len() + 1);
        nodes.push(Node { call: NONE, ret: NONE, prev: NONE, next: 1 });
        let mut ret_of = vec![NONE; calls.len()];
        for (i, &(_, is_return, call)) in events.iter().enumerate() {
            let at = i as u32 + 1;
            if is_return {
                ret_of[call as usize] = at;
            }
            nodes.push(Node { call, ret: NONE, prev: at - 1, next: at + 1 });
        }
        if let Some(last) = nodes.last_mut() {
            last.next = NONE;
        }
        for (i, &(_, is_return, call)) in events.iter().enumerate() {
            if !is_return {
                nodes[i + 1].ret = ret_of[call as usize];
            }
        }
        Self { nodes }
    }

    fn first(&self) -> u32 {
        self.nodes[0].next
    }

    fn call_of(&self, node: u32) -> usize {
        self.nodes[node as usize].call as usize
    }

    fn unlink(&mut self, n: u32) {
        let Node { prev, next, .. } = self.nodes[n as usize];
        self.nodes[prev as usize].next = next;
        if next != NONE {
            self.nodes[next as usize].prev = prev;
        }
    }

    fn relink(&mut self, n: u32) {
        let Node { prev, next, .. } = self.nodes[n as usize];
        self.nodes[prev as usize].next = n;
        if next != NONE {
            self.nodes[next as usize].prev = n;
        }
    }

    /// Takes the invocation `n` and its completion out of the list.
    fn lift(&mut self, n: u32) {
        let ret = self.nodes[n as usize].ret;
        self.unlink(n);
        self.unlink(ret);
    }

    /// Puts back what the last [`lift`](Self::lift) took out (lifts undo in reverse).
    fn unlift(&mut self, n: u32) {
        let ret = self.nodes[n as usize].ret;
        self.relink(ret);
        self.relink(n);
    }

    /// The calls invoked before node `until` and still in the list, other than its own.
    fn pending_before(&self, until: u32, most: usize) -> Vec<usize> {
        let own = self.nodes[until as usize].call;
        let mut out = Vec::new();
        let mut n = self.first();
        while n != until && n != NONE && out.len() < most {
            let node = self.nodes[n as usize];
            if node.ret != NONE && node.call != own {
                out.push(node.call as usize);
            }
            n = node.next;
        }
        out
    }
}

/// The set of calls applied so far, as a bitset: the calls that completed first, in
/// invocation order, then the indeterminate ones from a word of their own.
struct Applied {
    words: Vec<u64>,
    /// How many calls completed (bits `0..finite`), and the words they take.
    finite: usize,
    finite_words: usize,
    /// Every completed call below it is applied.
    prefix: usize,
    /// One past the highest word holding an applied completed call (0 if none).
    top: usize,
    /// `(prefix, top)` before each [`set`](Self::set), for its [`clear`](Self::clear):
    /// the search sets and clears in stack order.
    undo: Vec<(usize, usize)>,
}

impl Applied {
    /// Each call's bit, and the empty set.
    fn layout<I>(calls: &[Call<I>]) -> (Vec<usize>, Self) {
        let mut order: Vec<usize> = (0..calls.len()).collect();
        order.sort_by_key(|&i| (calls[i].complete_ns.is_none(), calls[i].invoke_ns, i));
        let finite = calls.iter().filter(|c| c.complete_ns.is_some()).count();
        let finite_words = finite.div_ceil(64);
        let mut bit = vec![0; calls.len()];
        for (rank, &i) in order.iter().enumerate() {
            bit[i] = if rank < finite { rank } else { finite_words * 64 + rank - finite };
        }
        let words = finite_words + (calls.len() - finite).div_ceil(64);
        let set = Self { words: vec![0; words], finite, finite_words, prefix: 0, top: 0, undo: Vec::new() };
        (bit, set)
    }

    fn set(&mut self, bit: usize) {
        self.undo.push((self.prefix, self.top));
        self.words[bit / 64] |= 1 << (bit % 64);
        if bit < self.finite {
            self.top = self.top.max(bit / 64 + 1);
            if bit == self.prefix {
                self.advance_prefix();
            }
        }
    }

    fn clear(&mut self, bit: usize) {
        self.words[bit / 64] &= !(1 << (bit % 64));
        (self.prefix, self.top) = self.undo.pop().expect("cleared in the order set");
    }

    fn advance_prefix(&mut self) {
        while self.prefix < self.finite {
            let (w, b) = (self.prefix / 64, self.prefix % 64);
            let run = ((!(self.words[w] >> b)).trailing_zeros() as usize).min(64 - b);
            self.prefix += run;
            if run < 64 - b {
                break;
            }
        }
        self.prefix = self.prefix.min(self.finite);
    }

    /// Writes the canonical form of this set with `state` into `key`.
    fn key_into<S>(&self, state: S, key: &mut Key<S>) {
        let start = (self.prefix / 64).min(self.finite_words);
        let end = self.top.max(start);
        key.prefix = self.prefix as u32;
        key.state = state;
        key.words.clear();
        key.words.extend_from_slice(&self.words[start..end]);
        key.words.extend_from_slice(&self.words[self.finite_words..]);
    }
}

/// A configuration the search has explored: the calls applied and the state reached.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key<S> {
    prefix: u32,
    state: S,
    words: Vec<u64>,
}

impl<S> Key<S> {
    /// What a slot of the cache's table takes: the key and hashbrown's control byte.
    const SLOT_BYTES: usize = std::mem::size_of::<Self>() + 1;

    /// What its words take on the heap, with the allocator's header.
    fn heap_bytes(&self) -> usize {
        16 + 8 * self.words.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A register of small integers; reads carry what they returned.
    struct Register;

    #[derive(Clone, Copy, Debug)]
    enum RegOp {
        Read(u8),
        Write(u8),
    }

    impl Sequential for Register {
        type State = u8;
        type Input = RegOp;
        fn init(&self) -> u8 {
            0
        }
        fn step(&self, s: u8, op: &RegOp) -> Option<u8> {
            match *op {
                RegOp::Read(v) => (v == s).then_some(s),
                RegOp::Write(v) => Some(v),
            }
        }
    }

    fn call(input: RegOp, invoke_ns: u64, complete_ns: Option<u64>) -> Call<RegOp> {
        Call { input, invoke_ns, complete_ns }
    }

    #[test]
    fn lifting_and_unlifting_restores_the_list() {
        let calls = [call(RegOp::Write(1), 0, Some(10)), call(RegOp::Read(1), 5, Some(8))];
        let mut e = Events::new(&calls);
        let order = |e: &Events| {
            let mut v = Vec::new();
            let mut n = e.first();
            while n != NONE {
                v.push(n);
                n = e.nodes[n as usize].next;
            }
            v
        };
        let before = order(&e);
        assert_eq!(before, [1, 2, 3, 4]);
        let read = e.first();
        let read = e.nodes[read as usize].next;
        e.lift(read);
        assert_eq!(order(&e), [1, 4]);
        e.unlift(read);
        assert_eq!(order(&e), before);
    }

    #[test]
    fn the_applied_set_has_one_key_however_it_was_reached() {
        let calls: Vec<Call<RegOp>> = (0..130).map(|i| call(RegOp::Write(0), i, Some(i + 1))).collect();
        let (bit, mut a) = Applied::layout(&calls);
        let mut k1 = Key { prefix: 0, state: 0u8, words: Vec::new() };
        let mut k2 = k1.clone();
        for &b in &bit[..70] {
            a.set(b);
        }
        a.key_into(0, &mut k1);
        let (bit, mut b) = Applied::layout(&calls);
        for &i in bit[..70].iter().rev() {
            b.set(i);
        }
        b.key_into(0, &mut k2);
        assert_eq!(k1, k2);
        assert_eq!(k1.prefix, 70);
        b.clear(bit[0]);
        b.key_into(0, &mut k2);
        assert_ne!(k1, k2);
        assert_eq!(k2.prefix, 0, "the undo restores the prefix the set had before");
        assert_eq!(k2.words, [!0 << 1, (1 << 6) - 1], "bits 1..70 in the window");
    }

    #[test]
    fn a_read_that_returns_before_the_write_it_saw_was_invoked_is_stuck_on_it() {
        let calls = [call(RegOp::Read(1), 0, Some(10)), call(RegOp::Write(1), 20, Some(30))];
        let Outcome::Nonlinearizable(s) = search(&Register, &calls, 1000) else { panic!("linearizable") };
        assert_eq!((s.linearized, s.blocked, s.state), (0, 0, 0));
    }

    #[test]
    fn a_search_past_its_bound_says_so() {
        let calls: Vec<Call<RegOp>> = (0..10).map(|i| call(RegOp::Write(i), 0, Some(100))).collect();
        let Outcome::Bounded { explored, bound, .. } = search(&Register, &calls, 3) else { panic!("not bounded") };
        assert_eq!((explored, bound), (3, Bound::States(3)));
    }
}

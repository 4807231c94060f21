//! The generic checkers on histories as large as a run keeps.
//!
//! `cargo bench -p gauntlet --bench checkers`. Each history is generated from a fixed
//! seed by simulating the object it exercises (a set, a counter, a bank, an id
//! generator, a queue, a compare-and-set register), so every check does its full work
//! and passes. Targets: the first five on 1,000,000 operations under 1 s and 1 GiB
//! each; `linearizable` on 10,000 cas-register operations over 10 keys at concurrency
//! 10 under 5 s. Two more show the search's range: the same operations on one key
//! (`linearizable-one-key`), and with one read made stale (`linearizable-bound`), whose
//! refutation needs more than the default bound: what reaching `unknown` costs. The
//! time and peak memory of each first check are printed before the timings.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};

use criterion::{criterion_group, criterion_main, Criterion};
use gauntlet::checks::generic::{check, CheckerSpec, Model, MAX_STATES};
use gauntlet::checks::op::{Op, OpHistory, OpType, FINAL_PROCESS};
use gauntlet::checks::Validity;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Map, Value};

/// Counts the bytes allocated, to report each check's peak.
struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(now, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > layout.size() {
            let now = CURRENT.fetch_add(new_size - layout.size(), Ordering::Relaxed) + new_size - layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        } else {
            CURRENT.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const SEED: u64 = 0x6a75_6e67;
/// Operations in each of the large histories.
const OPS: usize = 1_000_000;
/// Virtual users issuing them.
const PROCESSES: u64 = 10;
const LINEARIZABLE_OPS: usize = 10_000;
const LINEARIZABLE_KEYS: u64 = 10;

/// One operation's place in time: who, when it was invoked and completed, and the
/// instant it took effect.
struct Slot {
    process: u64,
    invoke_ns: u64,
    complete_ns: u64,
    effect_ns: u64,
}

/// `n` operations of `PROCESSES` users, each running one at a time (20µs-2ms each,
/// with gaps), in invocation order.
fn schedule(rng: &mut ChaCha8Rng, n: usize) -> Vec<Slot> {
    let mut clock = [0u64; PROCESSES as usize];
    let mut slots: Vec<Slot> = (0..n)
        .map(|i| {
            let process = i as u64 % PROCESSES;
            let invoke_ns = clock[process as usize] + rng.random_range(0..50_000);
            let complete_ns = invoke_ns + rng.random_range(20_000..2_000_000);
            clock[process as usize] = complete_ns;
            Slot { process, invoke_ns, complete_ns, effect_ns: rng.random_range(invoke_ns..=complete_ns) }
        })
        .collect();
    slots.sort_by_key(|s| s.invoke_ns);
    slots
}

/// The slots' indexes in the order they took effect.
fn by_effect(slots: &[Slot]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..slots.len()).collect();
    order.sort_by_key(|&i| slots[i].effect_ns);
    order
}

fn op(slot: &Slot, f: &str, value: Value, result: Option<Value>, outcome: OpType) -> Op {
    Op {
        index: 0,
        process: slot.process,
        f: f.into(),
        key: None,
        value,
        result,
        outcome,
        invoke_ns: slot.invoke_ns,
        complete_ns: slot.complete_ns,
    }
}

fn finish(mut ops: Vec<Op>, mut final_reads: Vec<Op>) -> OpHistory {
    let end = ops.iter().map(|op| op.complete_ns).max().unwrap_or(0) + 1;
    for (i, op) in ops.iter_mut().chain(final_reads.iter_mut()).enumerate() {
        op.index = i as u64;
    }
    for r in &mut final_reads {
        (r.process, r.invoke_ns, r.complete_ns) = (FINAL_PROCESS, end, end + 1);
    }
    OpHistory { ops, final_reads, dropped: 0 }
}

fn final_op(f: &str, result: Value) -> Op {
    let slot = Slot { process: FINAL_PROCESS, invoke_ns: 0, complete_ns: 0, effect_ns: 0 };
    op(&slot, f, Value::Null, Some(result), OpType::Ok)
}

/// 98% of adds acknowledged, 1% indeterminate (half of which took effect), 1% failed.
fn outcome(rng: &mut ChaCha8Rng) -> (OpType, bool) {
    match rng.random_range(0..100) {
        0 => (OpType::Fail, false),
        1 => (OpType::Info, rng.random_bool(0.5)),
        _ => (OpType::Ok, true),
    }
}

fn set_history(rng: &mut ChaCha8Rng) -> OpHistory {
    let slots = schedule(rng, OPS);
    let mut present = Vec::new();
    let ops = slots
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let (outcome, happened) = outcome(rng);
            if happened {
                present.push(json!(i));
            }
            op(s, "add", json!(i), None, outcome)
        })
        .collect();
    finish(ops, vec![final_op("read", Value::Array(present))])
}

fn counter_history(rng: &mut ChaCha8Rng) -> OpHistory {
    let slots = schedule(rng, OPS);
    let mut happened = Vec::with_capacity(slots.len());
    let mut ops: Vec<Op> = slots
        .iter()
        .map(|s| match rng.random_range(0..10) {
            0 => {
                happened.push(true);
                op(s, "read", Value::Null, None, OpType::Ok)
            }
            _ => {
                let (outcome, took_effect) = outcome(rng);
                happened.push(took_effect);
                op(s, "add", json!(rng.random_range(-2i64..=5)), None, outcome)
            }
        })
        .collect();
    let mut count = 0i64;
    for i in by_effect(&slots).into_iter().filter(|&i| happened[i]) {
        match ops[i].f.as_str() {
            "read" => ops[i].result = Some(json!(count)),
            _ => count += ops[i].value.as_i64().expect("an increment"),
        }
    }
    finish(ops, vec![final_op("read", json!(count))])
}

fn bank_history(rng: &mut ChaCha8Rng) -> OpHistory {
    const ACCOUNTS: usize = 5;
    let slots = schedule(rng, OPS);
    let mut balances = [100i64; ACCOUNTS];
    let mut ops: Vec<Op> = slots
        .iter()
        .map(|s| match rng.random_bool(0.5) {
            true => op(s, "read", Value::Null, None, OpType::Ok),
            false => {
                let (from, to) = (rng.random_range(0..ACCOUNTS), rng.random_range(0..ACCOUNTS));
                op(s, "transfer", json!([from, to, rng.random_range(1..=10)]), None, OpType::Ok)
            }
        })
        .collect();
    let read = |b: &[i64; ACCOUNTS]| {
        Value::Object(b.iter().enumerate().map(|(a, v)| (format!("acct{a}"), json!(v))).collect::<Map<_, _>>())
    };
    for i in by_effect(&slots) {
        if ops[i].f == "read" {
            ops[i].result = Some(read(&balances));
        } else {
            let t = ops[i].value.as_array().expect("a transfer");
            let (from, to, amount) =
                (t[0].as_u64().unwrap() as usize, t[1].as_u64().unwrap() as usize, t[2].as_i64().unwrap());
            if balances[from] >= amount {
                balances[from] -= amount;
                balances[to] += amount;
            }
        }
    }
    finish(ops, vec![final_op("read", read(&balances))])
}

fn unique_ids_history(rng: &mut ChaCha8Rng) -> OpHistory {
    let slots = schedule(rng, OPS);
    let ops =
        slots.iter().enumerate().map(|(i, s)| op(s, "generate", Value::Null, Some(json!(i)), OpType::Ok)).collect();
    finish(ops, vec![])
}

fn total_queue_history(rng: &mut ChaCha8Rng) -> OpHistory {
    let slots = schedule(rng, OPS);
    let mut ops: Vec<Op> = slots
        .iter()
        .enumerate()
        .map(|(i, s)| match rng.random_bool(0.5) {
            true => op(s, "enqueue", json!(i), None, OpType::Ok),
            false => op(s, "dequeue", Value::Null, None, OpType::Ok),
        })
        .collect();
    let mut queue = std::collections::VecDeque::new();
    for i in by_effect(&slots) {
        if ops[i].f == "enqueue" {
            queue.push_back(ops[i].value.clone());
        } else {
            ops[i].result = Some(queue.pop_front().unwrap_or(Value::Null));
        }
    }
    finish(ops, vec![final_op("drain", Value::Array(queue.into()))])
}

/// Reads, writes and compare-and-sets of values 0..5 over `keys` keys, 1% of them
/// indeterminate (half of which took effect, possibly after the client gave up).
fn cas_register_history(rng: &mut ChaCha8Rng, keys: u64) -> OpHistory {
    let mut slots = schedule(rng, LINEARIZABLE_OPS);
    let mut ops: Vec<Op> = Vec::with_capacity(slots.len());
    let mut happens = Vec::with_capacity(slots.len());
    for s in &mut slots {
        let key = format!("k{}", rng.random_range(0..keys));
        let (f, value) = match rng.random_range(0..4) {
            0 | 1 => ("read", Value::Null),
            2 => ("write", json!(rng.random_range(0..5))),
            _ => ("cas", json!([rng.random_range(0..5), rng.random_range(0..5)])),
        };
        let (outcome, happened) = match rng.random_range(0..100) {
            0 => (OpType::Info, rng.random_bool(0.5)),
            _ => (OpType::Ok, true),
        };
        if outcome == OpType::Info {
            s.effect_ns = rng.random_range(s.invoke_ns..=s.complete_ns + 2 * (s.complete_ns - s.invoke_ns));
        }
        let mut o = op(s, f, value, None, outcome);
        o.key = Some(key);
        ops.push(o);
        happens.push(happened);
    }
    let mut registers: std::collections::HashMap<String, Value> = std::collections::HashMap::new();
    for i in by_effect(&slots).into_iter().filter(|&i| happens[i]) {
        let o = &mut ops[i];
        let register = registers.entry(o.key.clone().expect("keyed")).or_insert(Value::Null);
        match o.f.as_str() {
            "read" => o.result = Some(register.clone()),
            "write" => *register = o.value.clone(),
            _ if *register == o.value[0] => *register = o.value[1].clone(),
            _ if o.outcome == OpType::Ok => o.outcome = OpType::Fail,
            _ => {}
        }
    }
    finish(ops, vec![])
}

/// Makes a history from a seeded random source.
type Generator = fn(&mut ChaCha8Rng) -> OpHistory;

fn specs() -> Vec<(&'static str, CheckerSpec, Generator)> {
    let d = |name| CheckerSpec::with_defaults(name).expect("a checker");
    let linearizable = CheckerSpec::Linearizable {
        model: Model::CasRegister,
        read: "read".into(),
        write: "write".into(),
        cas: "cas".into(),
        max_states: MAX_STATES,
    };
    vec![
        ("set", d("set"), set_history),
        ("counter", d("counter"), counter_history),
        ("bank", CheckerSpec::Bank { read: "read".into(), total: Some(500), accounts: None }, bank_history),
        ("unique-ids", d("unique-ids"), unique_ids_history),
        ("total-queue", d("total-queue"), total_queue_history),
        ("linearizable", linearizable.clone(), |rng| cas_register_history(rng, LINEARIZABLE_KEYS)),
        // The same operations on one key: ten times the concurrency per key.
        ("linearizable-one-key", linearizable.clone(), |rng| cas_register_history(rng, 1)),
        // One read made stale: refuting it at this concurrency takes more than the
        // search's bound, so this measures what reaching the bound (unknown) costs.
        ("linearizable-bound", linearizable, |rng| {
            let mut h = cas_register_history(rng, 1);
            let read =
                h.ops.iter_mut().skip(2_000).find(|op| op.f == "read" && op.outcome == OpType::Ok).expect("a read");
            let seen = read.result.as_ref().and_then(Value::as_i64).unwrap_or(0);
            read.result = Some(json!((seen + 1) % 5));
            h
        }),
    ]
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("checkers");
    group.sample_size(10);
    for (name, spec, generate) in specs() {
        let history = generate(&mut ChaCha8Rng::seed_from_u64(SEED));
        let base = CURRENT.load(Ordering::Relaxed);
        PEAK.store(base, Ordering::Relaxed);
        let started = std::time::Instant::now();
        let r = check(&spec, &history);
        let took = started.elapsed();
        let peak = PEAK.load(Ordering::Relaxed) - base;
        let expected = if name == "linearizable-bound" { Validity::Unknown } else { Validity::Valid };
        assert_eq!(r.validity, expected, "{name} on its generated history: {r}");
        eprintln!(
            "{name}: {} operations, first check {:.0} ms, peak {:.1} MiB allocated by the check; {r}",
            history.ops.len() + history.final_reads.len(),
            took.as_secs_f64() * 1e3,
            peak as f64 / (1 << 20) as f64
        );
        group.bench_function(name, |b| b.iter(|| check(&spec, black_box(&history))));
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

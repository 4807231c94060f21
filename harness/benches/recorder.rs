//! The recorder's hot path: what every request costs the generator to record.
//!
//! `cargo bench -p gauntlet --bench recorder`. A request is recorded once per step, so
//! `record_step` must stay far below the generator's budget of a few microseconds per
//! request.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use gauntlet::load::recorder::{Recorder, Sample, StepId};
use gauntlet::load::slo::SloSpec;
use gauntlet::load::stats::{ErrorKind, Outcome, Stats};

fn samples(n: usize) -> Vec<Sample> {
    // Deterministic spread of latencies (0.1ms..~100ms) and outcomes.
    (0..n as u64)
        .map(|i| {
            let intended = Duration::from_micros(i * 200);
            let wait = Duration::from_micros((i * 7919) % 2_000);
            let service = Duration::from_micros(100 + (i * 104_729) % 100_000);
            let outcome = match i % 100 {
                0 => Outcome::Status(503),
                1 => Outcome::Error(ErrorKind::Timeout),
                _ => Outcome::Status(200),
            };
            Sample::plain(intended, intended + wait, intended + wait + service, outcome)
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let batch = samples(10_000);
    let mut group = c.benchmark_group("recorder");
    group.throughput(Throughput::Elements(batch.len() as u64));

    group.bench_function("stats_record", |b| {
        let mut stats = Stats::new();
        b.iter(|| {
            for s in &batch {
                let lat = (s.done - s.intended).as_micros() as u64;
                let svc = (s.done - s.sent).as_micros() as u64;
                stats.record(black_box(lat), black_box(svc), s.outcome);
            }
        })
    });

    let layout = vec![("checkout".to_owned(), vec!["login".to_owned(), "order".to_owned()])];
    group.bench_function("record_step", |b| {
        let mut rec = Recorder::new(layout.clone(), &[], Duration::from_secs(3)).unwrap();
        b.iter(|| {
            for s in &batch {
                rec.record_step(StepId(1), black_box(s));
            }
        })
    });

    let slos: Vec<SloSpec> = ["p95 < 200ms", "error_rate < 1%"]
        .iter()
        .map(|t| toml::from_str(&format!("threshold = '{t}'\nduring = '0s..1s'\nabort_after = '5s'")).unwrap())
        .collect();
    group.bench_function("record_step_with_windows", |b| {
        let mut rec = Recorder::new(layout.clone(), &slos, Duration::from_secs(3)).unwrap();
        b.iter(|| {
            for s in &batch {
                rec.record_step(StepId(1), black_box(s));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! Criterion throughput of `Engine::decide`: events per second on one core with 10, 50 and 200
//! live rules, over 100,000 sessions held in memory and a pre-generated stream of 2,000,000
//! interleaved events (see `beckon_bench::workload`).
//!
//! One iteration is one whole pass over the stream, from sessions started afresh outside the
//! timed region, reported per event (`Throughput::Elements`). Whole passes because the stream
//! is not uniform: visits start, fill carts, meet guardrails and end, so a sample made of an
//! arbitrary slice would measure that slice's mix rather than the engine. Latency percentiles
//! and memory are in the `engine-report` binary.

use std::hint::black_box;
use std::time::{Duration, Instant};

use beckon_bench::fleet::Fleet;
use beckon_bench::workload;
use criterion::{
    BatchSize, BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};

const SESSIONS: usize = 100_000;
const EVENTS: usize = 2_000_000;
const SAMPLES: usize = 10;

fn decide(c: &mut Criterion) {
    let work = workload::events(SESSIONS, EVENTS);
    let steps = &work.steps[..];
    let mut group = c.benchmark_group("decide");
    group.throughput(Throughput::Elements(steps.len() as u64));
    // Every sample is one pass of a second or more, so samples of equal size and the fewest
    // criterion accepts already give a tight interval.
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(SAMPLES);
    group.warm_up_time(Duration::from_secs(2));
    for rules in [10, 50, 200] {
        let engine = workload::engine(rules);
        // Size the measurement to the samples, so that criterion does not cut them short.
        let mut fleet = Fleet::start(&engine, &work.visitors);
        let t = Instant::now();
        for step in steps {
            black_box(fleet.decide(&engine, step));
        }
        group.measurement_time(t.elapsed().mul_f64(SAMPLES as f64 * 1.6));
        drop(fleet);
        group.bench_function(BenchmarkId::new("rules", rules), |b| {
            b.iter_batched(
                || Fleet::start(&engine, &work.visitors),
                |mut fleet| {
                    for step in steps {
                        black_box(fleet.decide(&engine, black_box(step)));
                    }
                    // Returned, so that dropping 100,000 sessions is not timed.
                    fleet
                },
                BatchSize::PerIteration,
            );
        });
    }
    group.finish();
}

criterion_group!(benches, decide);
criterion_main!(benches);

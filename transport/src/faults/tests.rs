//! Unit tests of the fault injector as a whole.

use std::time::Duration;

use super::*;

const A: NodeId = NodeId(0);
const B: NodeId = NodeId(1);
const C: NodeId = NodeId(2);

fn busy_link() -> LinkFaults {
    LinkFaults {
        loss: LossModel::Bernoulli { p: 0.2 },
        duplicate: 0.1,
        delay: Duration::from_millis(1),
        jitter: Duration::from_millis(2),
        reorder: 0.1,
        reorder_delay: Duration::from_millis(5),
        corrupt: 0.05,
        bandwidth_bytes_per_sec: None,
    }
}

/// Sends `n` datagrams on `from -> to`, one per millisecond, returning all copies.
fn run(faults: &mut Faults, from: NodeId, to: NodeId, n: u32) -> Vec<DatagramCopy> {
    let mut out = Vec::new();
    for i in 0..n {
        let now = Time(u64::from(i) * 1000);
        faults.apply(now, from, to, &i.to_le_bytes(), &mut out);
    }
    out
}

#[test]
fn same_seed_same_faults() {
    let plan = FaultPlan::uniform(42, busy_link());
    let first = run(&mut Faults::new(plan.clone()).unwrap(), A, B, 2000);
    let second = run(&mut Faults::new(plan.clone()).unwrap(), A, B, 2000);
    assert_eq!(first, second);
    let other = run(
        &mut Faults::new(FaultPlan::uniform(43, busy_link())).unwrap(),
        A,
        B,
        2000,
    );
    assert_ne!(first, other);
}

#[test]
fn links_are_independent_of_interleaving() {
    let plan = FaultPlan::uniform(9, busy_link());
    // Alone: a -> b, then b -> a.
    let mut f = Faults::new(plan.clone()).unwrap();
    let ab = run(&mut f, A, B, 500);
    let ba = run(&mut f, B, A, 500);
    // Interleaved: same datagrams per link, alternating links.
    let mut g = Faults::new(plan).unwrap();
    let (mut ab2, mut ba2) = (Vec::new(), Vec::new());
    for i in 0..500u32 {
        let now = Time(u64::from(i) * 1000);
        g.apply(now, B, A, &i.to_le_bytes(), &mut ba2);
        g.apply(now, A, B, &i.to_le_bytes(), &mut ab2);
    }
    assert_eq!(ab, ab2);
    assert_eq!(ba, ba2);
    assert_ne!(ab, ba, "directions draw from different streams");
    assert_eq!(f.stats(), g.stats());
}

#[test]
fn bernoulli_rate_within_bounds() {
    let n = 100_000;
    let p = 0.3;
    let mut f = Faults::new(FaultPlan::uniform(1, LinkFaults::lossy(p))).unwrap();
    let out = run(&mut f, A, B, n);
    let lost = f.stats().dropped_loss as f64;
    // Five standard deviations of a binomial(n, p): a fixed seed makes this exact anyway,
    // the bound documents what a correct generator must satisfy.
    let sigma = (f64::from(n) * p * (1.0 - p)).sqrt();
    assert!((lost - f64::from(n) * p).abs() < 5.0 * sigma, "lost {lost}");
    assert_eq!(out.len() as u64 + f.stats().dropped_loss, u64::from(n));
    assert!(
        out.iter().all(|d| d.at.0 % 1000 == 0),
        "no delay configured"
    );
}

#[test]
fn gilbert_elliott_is_bursty() {
    let (p, r) = (0.05, 0.25);
    let plan = FaultPlan::uniform(
        3,
        LinkFaults {
            loss: LossModel::GilbertElliott {
                p_good_to_bad: p,
                p_bad_to_good: r,
                loss_in_good: 0.0,
                loss_in_bad: 1.0,
            },
            ..LinkFaults::default()
        },
    );
    let mut f = Faults::new(plan).unwrap();
    let n = 100_000u32;
    let mut bursts = Vec::new();
    let mut run_len = 0u32;
    let mut out = Vec::new();
    for i in 0..n {
        out.clear();
        f.apply(Time(u64::from(i)), A, B, b"x", &mut out);
        if out.is_empty() {
            run_len += 1;
        } else if run_len > 0 {
            bursts.push(run_len);
            run_len = 0;
        }
    }
    let mean_burst = f64::from(bursts.iter().sum::<u32>()) / bursts.len() as f64;
    assert!(
        (mean_burst - 1.0 / r).abs() < 0.1 / r,
        "mean burst {mean_burst}"
    );
    // Stationary loss rate p / (p + r).
    let rate = f.stats().dropped_loss as f64 / f64::from(n);
    assert!((rate - p / (p + r)).abs() < 0.02, "rate {rate}");
    // A Bernoulli link with the same rate has mean burst 1 / (1 - rate) ≈ 1.2, far below.
    assert!(mean_burst > 3.0);
}

#[test]
fn partitions_follow_windows_and_direction() {
    let mut plan = FaultPlan::default();
    plan.partitions.push(Partition {
        start: Duration::from_millis(10),
        end: Duration::from_millis(20),
        side_a: vec![A],
        side_b: vec![B, C],
        one_way: true,
    });
    let epoch = Time(1_000_000);
    let mut f = Faults::with_epoch(plan, epoch).unwrap();
    let mut out = Vec::new();
    let at = |ms: u64| epoch + Duration::from_millis(ms);
    f.apply(at(5), A, B, b"before", &mut out);
    f.apply(at(10), A, B, b"cut", &mut out);
    f.apply(at(15), A, C, b"cut", &mut out);
    f.apply(at(15), B, A, b"one-way: back path open", &mut out);
    f.apply(at(20), A, B, b"healed", &mut out);
    let got: Vec<&[u8]> = out.iter().map(|d| d.bytes.as_slice()).collect();
    assert_eq!(got, [&b"before"[..], b"one-way: back path open", b"healed"]);
    assert_eq!(f.stats().dropped_partition, 2);
}

#[test]
fn corruption_flips_bits() {
    let plan = FaultPlan::uniform(
        5,
        LinkFaults {
            corrupt: 1.0,
            ..LinkFaults::default()
        },
    );
    let mut f = Faults::new(plan).unwrap();
    let original = [0xA5u8; 64];
    let mut out = Vec::new();
    for _ in 0..200 {
        f.apply(Time::ZERO, A, B, &original, &mut out);
    }
    for d in &out {
        let flipped: u32 = d
            .bytes
            .iter()
            .zip(&original)
            .map(|(x, y)| (x ^ y).count_ones())
            .sum();
        assert!((1..=3).contains(&flipped), "{flipped} bits flipped");
    }
    assert_eq!(f.stats().corrupted, 200);
}

#[test]
fn bandwidth_cap_spaces_arrivals() {
    let plan = FaultPlan::uniform(
        0,
        LinkFaults {
            delay: Duration::from_millis(2),
            bandwidth_bytes_per_sec: Some(1_000_000),
            ..LinkFaults::default()
        },
    );
    let mut f = Faults::new(plan).unwrap();
    let mut out = Vec::new();
    // Five 1000-byte datagrams at once: 1 ms each on a 1 MB/s link.
    for _ in 0..5 {
        f.apply(Time::ZERO, A, B, &[0; 1000], &mut out);
    }
    // The other direction has its own queue.
    f.apply(Time::ZERO, B, A, &[0; 1000], &mut out);
    let at: Vec<u64> = out.iter().map(|d| d.at.0).collect();
    assert_eq!(at, [3000, 4000, 5000, 6000, 7000, 3000]);
    // After the queue drains, a datagram waits only for itself.
    out.clear();
    f.apply(Time(100_000), A, B, &[0; 500], &mut out);
    assert_eq!(out[0].at, Time(102_500));
}

#[test]
fn duplicate_delay_jitter_reorder() {
    let plan = FaultPlan::uniform(
        11,
        LinkFaults {
            duplicate: 1.0,
            delay: Duration::from_millis(1),
            jitter: Duration::from_millis(3),
            reorder: 0.5,
            reorder_delay: Duration::from_millis(50),
            ..LinkFaults::default()
        },
    );
    let mut f = Faults::new(plan).unwrap();
    let out = run(&mut f, A, B, 1000);
    assert_eq!(out.len(), 2000, "every datagram duplicated");
    let s = f.stats().clone();
    assert_eq!(s.duplicated, 1000);
    assert_eq!(s.delayed, 2000);
    assert!((800..1200).contains(&s.reordered), "{}", s.reordered);
    for (i, pair) in out.chunks(2).enumerate() {
        assert_eq!(pair[0].bytes, pair[1].bytes);
        for d in pair {
            let sent = i as u64 * 1000;
            let extra = d.at.0 - sent;
            assert!(
                (1000..=4000).contains(&extra) || (51_000..=54_000).contains(&extra),
                "{extra}"
            );
        }
    }
    // Arrival order differs from send order: later datagrams overtake earlier ones.
    let mut arrivals: Vec<(Time, u32)> = out
        .iter()
        .map(|d| (d.at, u32::from_le_bytes(d.bytes[..4].try_into().unwrap())))
        .collect();
    arrivals.sort();
    assert!(arrivals.windows(2).any(|w| w[0].1 > w[1].1));
}

#[test]
fn per_link_overrides_apply() {
    let mut plan = FaultPlan::uniform(1, LinkFaults::lossy(1.0));
    plan.links.push(LinkOverride {
        from: A,
        to: B,
        faults: LinkFaults::default(),
    });
    let mut f = Faults::new(plan).unwrap();
    assert_eq!(run(&mut f, A, B, 10).len(), 10);
    assert_eq!(run(&mut f, B, A, 10).len(), 0);
    assert!(Faults::new(FaultPlan::uniform(1, LinkFaults::lossy(2.0))).is_err());
}

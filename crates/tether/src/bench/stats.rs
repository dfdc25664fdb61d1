//! What `tether bench` counts: [`SeqTracker`] checks every seq one connection
//! sees (gaps are lost messages, repeats are duplicates), [`Latency`] is an HDR
//! histogram that many tasks record into, and [`Counters`] are the live totals
//! behind the progress line.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use hdrhistogram::Histogram;

/// Gaps a [`SeqTracker`] remembers individually, so that a seq arriving late
/// can be told from a duplicate. Beyond this the oldest gap is forgotten: its
/// seqs stay counted as lost, and should one still arrive it counts as a
/// duplicate. A healthy run has no gap at all.
const MAX_GAPS: usize = 4096;

/// What one observed seq was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// The next seq expected.
    Next,
    /// Beyond the next one: this many seqs were skipped (counted as lost).
    Gap(u64),
    /// A seq that had been skipped arrived after all: it is no longer lost
    /// (counted as reordered; the protocol promises seq order, so this is a
    /// gateway fault too, but not a loss).
    Late,
    /// Already seen (or at or before the starting point): a duplicate.
    Duplicate,
}

/// Checks the seqs one connection receives on one channel.
///
/// The protocol promises each connection every seq of a channel, in order,
/// exactly once, from its subscription on. Starting from the last seq before
/// the subscription ([`SeqTracker::after`]), every seq that is skipped counts as
/// lost, every seq seen again as a duplicate; a skipped seq that arrives later
/// moves from lost to reordered. [`SeqTracker::finish`] counts the tail a
/// connection never received.
#[derive(Debug, Clone)]
pub struct SeqTracker {
    /// The next seq expected: one past the highest seen.
    next: u64,
    /// Skipped seqs not seen since: start → end, inclusive, disjoint.
    missing: BTreeMap<u64, u64>,
    lost: u64,
    duplicates: u64,
    reordered: u64,
    received: u64,
}

impl SeqTracker {
    /// A tracker that expects `last + 1` next (`last`: the seq in the subscribe
    /// ack, 0 for an empty channel).
    pub fn after(last: u64) -> SeqTracker {
        SeqTracker {
            next: last.saturating_add(1),
            missing: BTreeMap::new(),
            lost: 0,
            duplicates: 0,
            reordered: 0,
            received: 0,
        }
    }

    /// Records one received seq.
    pub fn observe(&mut self, seq: u64) -> Seen {
        self.received += 1;
        if seq == self.next {
            self.next += 1;
            Seen::Next
        } else if seq > self.next {
            let skipped = seq - self.next;
            self.remember_gap(self.next, seq - 1);
            self.lost += skipped;
            self.next = seq + 1;
            Seen::Gap(skipped)
        } else if self.fill(seq) {
            self.lost -= 1;
            self.reordered += 1;
            Seen::Late
        } else {
            self.duplicates += 1;
            Seen::Duplicate
        }
    }

    /// Counts every seq after the highest one seen, up to and including `last`
    /// (the channel's final seq), as lost; returns how many that was.
    pub fn finish(&mut self, last: u64) -> u64 {
        if last < self.next {
            return 0;
        }
        let tail = last - self.next + 1;
        self.remember_gap(self.next, last);
        self.lost += tail;
        self.next = last + 1;
        tail
    }

    /// The highest seq seen (or the starting point when none was).
    pub fn highest(&self) -> u64 {
        self.next - 1
    }

    pub fn lost(&self) -> u64 {
        self.lost
    }

    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    pub fn reordered(&self) -> u64 {
        self.reordered
    }

    /// Seqs observed, duplicates included.
    pub fn received(&self) -> u64 {
        self.received
    }

    fn remember_gap(&mut self, start: u64, end: u64) {
        while self.missing.len() >= MAX_GAPS {
            self.missing.pop_first();
        }
        self.missing.insert(start, end);
    }

    /// Removes `seq` from the remembered gaps; false when it was not in one.
    fn fill(&mut self, seq: u64) -> bool {
        let Some((&start, &end)) = self.missing.range(..=seq).next_back() else {
            return false;
        };
        if seq > end {
            return false;
        }
        self.missing.remove(&start);
        if start < seq {
            self.missing.insert(start, seq - 1);
        }
        if seq < end {
            self.missing.insert(seq + 1, end);
        }
        true
    }
}

/// Latencies in microseconds, from 1 µs to an hour at 3 significant digits,
/// recorded by many tasks into a few mutex-guarded shards (one histogram per
/// connection would cost ~190 KB each) and merged at the end.
pub struct Latency {
    shards: Vec<Mutex<Histogram<u64>>>,
}

/// The highest latency recorded exactly; larger ones are recorded as this.
const LATENCY_MAX_US: u64 = 3_600_000_000;

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_MAX_US, 3).expect("valid histogram bounds")
}

impl Latency {
    pub fn new(shards: usize) -> Latency {
        Latency {
            shards: (0..shards.max(1)).map(|_| Mutex::new(histogram())).collect(),
        }
    }

    /// Records one latency; `who` (a connection's index) picks the shard.
    pub fn record(&self, who: usize, micros: u64) {
        let shard = &self.shards[who % self.shards.len()];
        let mut h = shard.lock().unwrap_or_else(|e| e.into_inner());
        h.saturating_record(micros);
    }

    /// Records many latencies at once (one lock).
    pub fn record_all(&self, who: usize, micros: &[u64]) {
        let shard = &self.shards[who % self.shards.len()];
        let mut h = shard.lock().unwrap_or_else(|e| e.into_inner());
        for &us in micros {
            h.saturating_record(us);
        }
    }

    /// Every shard added up.
    pub fn merged(&self) -> Histogram<u64> {
        let mut all = histogram();
        for shard in &self.shards {
            let h = shard.lock().unwrap_or_else(|e| e.into_inner());
            // Same bounds everywhere, so adding cannot fail.
            let _ = all.add(&*h);
        }
        all
    }
}

/// The latency summary a run reports, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Percentiles {
    pub samples: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p99_9: u64,
    pub max: u64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        Percentiles {
            samples: h.len(),
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p99_9: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

/// Live totals of a run, for the progress line (the final report recounts from
/// the trackers).
#[derive(Debug, Default)]
pub struct Counters {
    /// Connections open and ready (subscribed, for subscribers).
    pub connected: AtomicU64,
    /// Publishes (or commands) sent (resends not counted).
    pub sent: AtomicU64,
    /// Publishes acknowledged.
    pub acked: AtomicU64,
    /// Events received by subscribers.
    pub delivered: AtomicU64,
    pub lost: AtomicU64,
    pub duplicates: AtomicU64,
    /// `rate_limited` (and other retryable) error replies, each followed by a resend.
    pub retried: AtomicU64,
    /// Connections the gateway closed during the run.
    pub disconnects: AtomicU64,
    /// Connections that could not be opened (`connections`).
    pub connect_failed: AtomicU64,
    /// Protocol `ping`s sent and `pong`s received (`connections`).
    pub pings: AtomicU64,
    pub pongs: AtomicU64,
    /// Commands answered by a `result` (`rpc`; the first result of each).
    pub results: AtomicU64,
    /// Commands answered by an `error` such as `timeout` (`rpc`).
    pub failed: AtomicU64,
}

impl Counters {
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }

    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    /// Applies one [`SeqTracker::observe`] outcome to the live loss counts.
    pub fn seen(&self, seen: Seen) {
        match seen {
            Seen::Next => {}
            Seen::Gap(n) => Counters::add(&self.lost, n),
            Seen::Late => {
                self.lost.fetch_sub(1, Ordering::Relaxed);
            }
            Seen::Duplicate => Counters::add(&self.duplicates, 1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(start: u64, seqs: &[u64]) -> SeqTracker {
        let mut t = SeqTracker::after(start);
        for &s in seqs {
            t.observe(s);
        }
        t
    }

    #[test]
    fn contiguous_seqs_are_neither_lost_nor_duplicated() {
        let t = run(0, &[1, 2, 3, 4, 5]);
        assert_eq!((t.lost(), t.duplicates(), t.reordered()), (0, 0, 0));
        assert_eq!(t.highest(), 5);
        assert_eq!(t.received(), 5);
        // Starting after an existing history.
        let t = run(41, &[42, 43]);
        assert_eq!((t.lost(), t.duplicates()), (0, 0));
    }

    #[test]
    fn a_planted_gap_is_counted_as_lost() {
        let mut t = SeqTracker::after(0);
        assert_eq!(t.observe(1), Seen::Next);
        assert_eq!(t.observe(2), Seen::Next);
        assert_eq!(t.observe(5), Seen::Gap(2), "3 and 4 skipped");
        assert_eq!(t.observe(6), Seen::Next);
        assert_eq!((t.lost(), t.duplicates()), (2, 0));
        // A first event that is not start + 1 is a gap too.
        let t = run(10, &[12]);
        assert_eq!(t.lost(), 1);
    }

    #[test]
    fn a_planted_repeat_is_counted_as_a_duplicate() {
        let mut t = SeqTracker::after(0);
        t.observe(1);
        t.observe(2);
        assert_eq!(t.observe(2), Seen::Duplicate);
        assert_eq!(t.observe(1), Seen::Duplicate);
        assert_eq!(t.observe(3), Seen::Next);
        assert_eq!((t.lost(), t.duplicates()), (0, 2));
        // A seq at or before the subscription point was never due: a duplicate.
        let t = run(7, &[7, 8]);
        assert_eq!((t.lost(), t.duplicates()), (0, 1));
    }

    #[test]
    fn a_late_seq_fills_its_gap_once_and_then_is_a_duplicate() {
        let mut t = SeqTracker::after(0);
        t.observe(1);
        assert_eq!(t.observe(4), Seen::Gap(2));
        assert_eq!(t.observe(3), Seen::Late);
        assert_eq!((t.lost(), t.reordered()), (1, 1), "2 still missing");
        assert_eq!(t.observe(3), Seen::Duplicate);
        assert_eq!(t.observe(2), Seen::Late);
        assert_eq!((t.lost(), t.duplicates(), t.reordered()), (0, 1, 2));
        assert_eq!(t.observe(5), Seen::Next);
        // The middle of a long gap splits it in two.
        let mut t = run(0, &[1, 10]);
        assert_eq!(t.observe(5), Seen::Late);
        assert_eq!(t.observe(2), Seen::Late);
        assert_eq!(t.observe(9), Seen::Late);
        assert_eq!(t.observe(5), Seen::Duplicate);
        assert_eq!(t.lost(), 8 - 3);
    }

    #[test]
    fn the_tail_never_received_is_lost() {
        let mut t = run(0, &[1, 2, 3]);
        assert_eq!(t.finish(3), 0);
        assert_eq!(t.finish(6), 3);
        assert_eq!(t.lost(), 3);
        // A connection that received nothing lost everything.
        let mut t = SeqTracker::after(5);
        assert_eq!(t.finish(9), 4);
        assert_eq!(t.highest(), 9);
        // Already past the final seq: nothing more is lost.
        let mut t = run(0, &[1, 2, 3]);
        assert_eq!(t.finish(2), 0);
    }

    #[test]
    fn forgotten_gaps_stay_lost() {
        let mut t = SeqTracker::after(0);
        let mut seq = 0;
        for _ in 0..MAX_GAPS + 10 {
            seq += 2;
            t.observe(seq);
        }
        assert_eq!(t.lost(), (MAX_GAPS + 10) as u64);
        // The first gap (seq 1) was forgotten: arriving now it is a duplicate.
        assert_eq!(t.observe(1), Seen::Duplicate);
        // A recent one is still recognised.
        assert_eq!(t.observe(seq - 1), Seen::Late);
    }

    #[test]
    fn latency_percentiles_merge_every_shard() {
        let l = Latency::new(4);
        for i in 1..=1000u64 {
            l.record(i as usize, i);
        }
        l.record_all(0, &[LATENCY_MAX_US * 2]);
        let p = Percentiles::of(&l.merged());
        assert_eq!(p.samples, 1001);
        assert!((499..=501).contains(&p.p50), "{p:?}");
        assert!((899..=901).contains(&p.p90), "{p:?}");
        assert!(p.max >= LATENCY_MAX_US, "saturated, not dropped: {p:?}");
        assert_eq!(Percentiles::of(&Latency::new(1).merged()), Percentiles::default());
    }

    #[test]
    fn live_counters_follow_the_tracker() {
        let c = Counters::default();
        let mut t = SeqTracker::after(0);
        for s in [1, 4, 2, 4] {
            c.seen(t.observe(s));
        }
        assert_eq!(Counters::get(&c.lost), t.lost());
        assert_eq!(Counters::get(&c.duplicates), t.duplicates());
    }
}

//! Choosing an endpoint for one request, as a pure function of the healthy
//! endpoints: the highest priority tier first, then round robin, least used or
//! best health score within it, ties going to the next endpoint in URL order.
//!
//! Not here: which endpoints are healthy and their scores (the pool measures
//! them and passes them in as [`Candidate`]s).

use super::config::LoadBalancingStrategy;

/// A healthy endpoint as the choice sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Candidate {
    pub(super) index: usize,
    pub(super) priority: i32,
    pub(super) in_flight: usize,
    pub(super) score: f64,
}

/// Picks among healthy candidates (in index order) as the module docs say;
/// `last` is the endpoint chosen last.
pub(super) fn choose(strategy: LoadBalancingStrategy, healthy: &[Candidate], last: Option<usize>) -> Option<usize> {
    let top = healthy.iter().map(|c| c.priority).max()?;
    let tier = healthy.iter().filter(|c| c.priority == top);
    let best: Vec<usize> = match strategy {
        LoadBalancingStrategy::RoundRobin => tier.map(|c| c.index).collect(),
        LoadBalancingStrategy::LeastUsed => {
            let least = tier.clone().map(|c| c.in_flight).min()?;
            tier.filter(|c| c.in_flight == least).map(|c| c.index).collect()
        }
        LoadBalancingStrategy::HealthBased => {
            let best = tier.clone().map(|c| c.score).fold(f64::MIN, f64::max);
            tier.filter(|c| c.score >= best).map(|c| c.index).collect()
        }
    };
    best.iter()
        .copied()
        .find(|i| last.is_some_and(|l| *i > l))
        .or_else(|| best.first().copied())
}

#[cfg(test)]
mod tests {
    use super::*;
    use LoadBalancingStrategy::{HealthBased, LeastUsed, RoundRobin};

    fn c(index: usize, priority: i32, in_flight: usize, score: f64) -> Candidate {
        Candidate {
            index,
            priority,
            in_flight,
            score,
        }
    }

    #[test]
    fn round_robin_takes_the_top_tier_in_turn() {
        let all = [c(0, 0, 0, 1.0), c(1, 0, 0, 1.0), c(2, 0, 0, 1.0)];
        let mut last = None;
        let picks: Vec<usize> = (0..5)
            .map(|_| {
                last = choose(RoundRobin, &all, last);
                last.expect("some")
            })
            .collect();
        assert_eq!(picks, [0, 1, 2, 0, 1]);
        // Endpoint 1 unhealthy (absent): 0 and 2 alternate.
        let two = [c(0, 0, 0, 1.0), c(2, 0, 0, 1.0)];
        assert_eq!(choose(RoundRobin, &two, Some(0)), Some(2));
        assert_eq!(choose(RoundRobin, &two, Some(2)), Some(0));
        assert_eq!(choose(RoundRobin, &[], Some(0)), None);
    }

    #[test]
    fn priority_tiers_come_before_the_strategy() {
        // Endpoint 1 has the higher priority: it wins even when busier and worse.
        let all = [c(0, 0, 0, 1.0), c(1, 5, 9, 0.1)];
        for s in [RoundRobin, LeastUsed, HealthBased] {
            assert_eq!(choose(s, &all, Some(1)), Some(1), "{s}");
        }
        // Without it, the lower tier serves.
        assert_eq!(choose(LeastUsed, &all[..1], Some(1)), Some(0));
    }

    #[test]
    fn least_used_takes_the_fewest_in_flight_then_turns() {
        let all = [c(0, 0, 3, 1.0), c(1, 0, 1, 1.0), c(2, 0, 1, 1.0)];
        assert_eq!(choose(LeastUsed, &all, None), Some(1));
        assert_eq!(choose(LeastUsed, &all, Some(1)), Some(2));
        assert_eq!(choose(LeastUsed, &all, Some(2)), Some(1));
    }

    #[test]
    fn health_based_takes_the_best_score() {
        let all = [c(0, 0, 0, 0.2), c(1, 0, 0, 0.9), c(2, 0, 0, 0.5)];
        assert_eq!(choose(HealthBased, &all, None), Some(1));
        assert_eq!(choose(HealthBased, &all, Some(1)), Some(1));
        let tied = [c(0, 0, 0, 0.5), c(1, 0, 0, 0.5)];
        assert_eq!(choose(HealthBased, &tied, Some(0)), Some(1));
    }
}

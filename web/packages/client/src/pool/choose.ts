// Choosing a connection for one request, as a pure function of the healthy
// connections (the Rust pool's choose.rs): the highest priority tier first,
// then round robin, least used or best health score within it, ties going to
// the next connection (by id) after the one chosen last, wrapping around.
//
// Not here: which connections are healthy and their scores (the pool measures
// them and passes them in as `Candidate`s).

import { type LoadBalancingStrategy } from "./config.js";

/** A healthy connection as the choice sees it. */
export interface Candidate {
  /** The connection's id; candidates come in increasing id order. */
  readonly id: number;
  /** Its URL's priority (higher preferred). */
  readonly priority: number;
  /** Requests in flight through the pool (health pings not counted). */
  readonly inFlight: number;
  /** Its health score (see health.ts). */
  readonly score: number;
}

/**
 * Picks among `healthy` (in increasing id order); `last` is the id chosen
 * last. Returns the chosen id, or null when there is no candidate.
 */
export function chooseConnection(
  strategy: LoadBalancingStrategy,
  healthy: readonly Candidate[],
  last: number | null,
): number | null {
  if (healthy.length === 0) return null;
  const top = Math.max(...healthy.map((c) => c.priority));
  const tier = healthy.filter((c) => c.priority === top);
  let best: readonly Candidate[];
  switch (strategy) {
    case "round-robin":
      best = tier;
      break;
    case "least-used": {
      const least = Math.min(...tier.map((c) => c.inFlight));
      best = tier.filter((c) => c.inFlight === least);
      break;
    }
    case "health-based": {
      const most = Math.max(...tier.map((c) => c.score));
      best = tier.filter((c) => c.score >= most);
      break;
    }
  }
  const next = last === null ? undefined : best.find((c) => c.id > last);
  return (next ?? best[0])?.id ?? null;
}

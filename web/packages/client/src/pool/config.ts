// What a `TetherPool` can be told: the guide's `PoolConfig` (maxConnections,
// minConnections, connectionTimeout, healthCheckInterval,
// loadBalancingStrategy, urls), the pool's own tuning (priorities, queue
// capacity, error window, idle timeout, growth threshold) and the options
// passed on to every member `TetherClient`; with documented defaults (the Rust
// pool's, crates/client/src/pool/config.rs) and validation into
// `PoolConfigError`s that name the bad field.
//
// Not here: what the values mean at run time (see ../pool.ts), and reading them
// from anywhere (the caller builds the object).

import { type Random } from "../backoff.js";
import { type CircuitConfig } from "../circuit.js";
import { type Clock, type WebSocketConstructor } from "../connection.js";
import { isValidPrincipal } from "../protocol.js";

/** How the pool picks a connection within the highest healthy priority tier. */
export type LoadBalancingStrategy = "round-robin" | "least-used" | "health-based";

/** The three strategy names, in documentation order. */
export const LOAD_BALANCING_STRATEGIES: readonly LoadBalancingStrategy[] = ["round-robin", "least-used", "health-based"];

/** Default cap on connections (the Rust pool's `DEFAULT_MAX_CONNECTIONS`). */
export const DEFAULT_POOL_MAX_CONNECTIONS = 8;
/** Default time for a connection's `welcome`, and for a request to wait for a connection, in ms. */
export const DEFAULT_POOL_CONNECTION_TIMEOUT = 10_000;
/**
 * Default period of health pings in ms: often enough to notice a slow gateway
 * within seconds, rare enough to be noise next to real traffic.
 */
export const DEFAULT_HEALTH_CHECK_INTERVAL = 5_000;
/**
 * Default capacity of the wait queue (requests waiting for a connection): a
 * burst of about a second of traffic while a failover happens; beyond it
 * callers should back off rather than pile up memory.
 */
export const DEFAULT_POOL_QUEUE_CAPACITY = 1024;
/** Default window in ms in which errors lower a connection's health score. */
export const DEFAULT_ERROR_WINDOW = 60_000;
/** Default time in ms after which an extra connection (above `minConnections`) with nothing to do is closed. */
export const DEFAULT_IDLE_TIMEOUT = 60_000;
/**
 * Requests in flight per connection at which the top tier counts as busy and
 * another connection is opened (when `maxConnections` allows); the Rust pool's
 * `GROW_IN_FLIGHT`.
 */
export const DEFAULT_GROW_IN_FLIGHT = 64;

/**
 * The guide's pool configuration. Only `urls` is required here; the guide's
 * examples give every field, which works as written.
 */
export interface PoolConfig {
  /** Most connections open at once (default 8). At least 1. */
  maxConnections?: number;
  /** Connections kept open (default: one per URL, at most `maxConnections`). At least 1, at most `maxConnections`. */
  minConnections?: number;
  /**
   * In ms (default 10000): how long each connection may take to get its
   * `welcome`, and how long a request may wait in the queue for a connection.
   */
  connectionTimeout?: number;
  /** In ms (default 5000): the period of health pings, and how long one may go unanswered. */
  healthCheckInterval?: number;
  /** `round-robin` (default), `least-used` or `health-based`. */
  loadBalancingStrategy?: LoadBalancingStrategy;
  /** Gateway URLs (`ws://` or `wss://`), no duplicates; connections are spread over them. */
  urls: readonly string[];
}

/** `PoolConfig` plus the pool's tuning and the options of every member `TetherClient`. */
export interface TetherPoolOptions extends PoolConfig {
  /** One priority per URL, higher preferred: a lower tier gets traffic only while every higher one is unhealthy. Default: all 0. */
  priorities?: readonly number[];
  /** Requests that may wait for a connection (default 1024); see `TetherPool.send` for the overflow policy. */
  queueCapacity?: number;
  /** In ms (default 60000): errors older than this no longer lower the health score. */
  errorWindow?: number;
  /** In ms (default 60000): an extra connection idle this long is closed (down to `minConnections`). */
  idleTimeout?: number;
  /** In-flight requests per connection at which the pool grows (default 64). */
  growInFlight?: number;

  // Passed to every member TetherClient.
  /**
   * The principal sent as `client_id` by every connection, so that
   * deduplication spans them. Default: the page's persistent one
   * (`defaultClientId()`, kept in `localStorage` under `tether.clientId`, the
   * same as a `TetherClient`'s), so that a message sent through the pool and
   * replayed by another client of the page takes effect once.
   */
  clientId?: string;
  /** A fixed token, sent as `access_token`. */
  token?: string;
  /** Asked before every connect of every connection; wins over `token`. */
  getToken?: () => Promise<string | null | undefined>;
  /** Default `globalThis.WebSocket`. */
  WebSocketImpl?: WebSocketConstructor;
  /** Clock and timers of the pool and its connections (default `performance.now()` and the global timers). */
  clock?: Clock;
  /** The random source of the connections' backoff jitter (default `Math.random`). */
  random?: Random;
  /** Each connection's own heartbeat: ping after this many ms without sending (default 30000). */
  heartbeatInterval?: number;
  /** Each connection's own heartbeat: no pong within this many ms means a dead socket (default 10000). */
  heartbeatTimeout?: number;
  /** A request without a reply after this many ms is rejected (default 30000). */
  requestTimeout?: number;
  /** Reconnect a lost connection (default true). */
  autoReconnect?: boolean;
  /** Base reconnect delay in ms (default 1000). */
  reconnectInterval?: number;
  /** Largest reconnect delay in ms (default 30000). */
  maxReconnectDelay?: number;
  /** A connection gives up after this many reconnect delays (and is replaced); default never. */
  maxReconnectAttempts?: number | null;
  /** Each connection's connect circuit breaker (default 5 failures, 60 s). */
  circuit?: CircuitConfig;
}

/** A configuration that cannot work; the message names the field. Fix the configuration. */
export class PoolConfigError extends Error {
  override readonly name = "PoolConfigError";
}

/** The pool's own settings after defaults and validation. */
export interface ResolvedPoolConfig {
  readonly urls: readonly string[];
  readonly priorities: readonly number[];
  readonly maxConnections: number;
  readonly minConnections: number;
  readonly connectionTimeout: number;
  readonly healthCheckInterval: number;
  readonly loadBalancingStrategy: LoadBalancingStrategy;
  readonly queueCapacity: number;
  readonly errorWindow: number;
  readonly idleTimeout: number;
  readonly growInFlight: number;
}

function positiveInteger(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 1) throw new PoolConfigError(`${name} must be a whole number of at least 1, got ${String(value)}`);
  return value;
}

function positiveMs(name: string, value: number): number {
  if (typeof value !== "number" || !Number.isFinite(value) || value <= 0) {
    throw new PoolConfigError(`${name} must be a positive number of ms, got ${String(value)}`);
  }
  return value;
}

/** Applies the defaults and checks every value; throws a `PoolConfigError` naming the first bad one. */
export function resolvePoolConfig(options: TetherPoolOptions): ResolvedPoolConfig {
  if (typeof options !== "object" || options === null) throw new PoolConfigError("the pool needs a configuration object");
  const urls = options.urls as readonly unknown[] | undefined;
  if (!Array.isArray(urls) || urls.length === 0) throw new PoolConfigError("urls must list at least one gateway URL");
  const seen = new Set<string>();
  for (const url of urls) {
    if (typeof url !== "string" || !/^wss?:\/\/[^\s]+$/.test(url)) {
      throw new PoolConfigError(`URL ${JSON.stringify(url)} must start with ws:// or wss://`);
    }
    if (seen.has(url)) throw new PoolConfigError(`URL ${url} is listed twice`);
    seen.add(url);
  }
  const list = urls as readonly string[];
  const maxConnections = positiveInteger("maxConnections", options.maxConnections ?? DEFAULT_POOL_MAX_CONNECTIONS);
  const minConnections = positiveInteger("minConnections", options.minConnections ?? Math.min(list.length, maxConnections));
  if (minConnections > maxConnections) {
    throw new PoolConfigError(`minConnections (${minConnections}) must not exceed maxConnections (${maxConnections})`);
  }
  const strategy = options.loadBalancingStrategy ?? "round-robin";
  if (!LOAD_BALANCING_STRATEGIES.includes(strategy)) {
    throw new PoolConfigError(
      `unknown loadBalancingStrategy ${JSON.stringify(strategy)} (expected round-robin, least-used or health-based)`,
    );
  }
  const priorities = options.priorities ?? list.map(() => 0);
  if (priorities.length !== list.length) {
    throw new PoolConfigError(`priorities has ${priorities.length} entries for ${list.length} URLs`);
  }
  if (priorities.some((p) => typeof p !== "number" || !Number.isFinite(p))) {
    throw new PoolConfigError("priorities must be finite numbers");
  }
  if (options.clientId !== undefined && !isValidPrincipal(options.clientId)) {
    throw new PoolConfigError("clientId must be 1 to 128 printable ASCII characters");
  }
  return {
    urls: [...list],
    priorities: [...priorities],
    maxConnections,
    minConnections,
    connectionTimeout: positiveMs("connectionTimeout", options.connectionTimeout ?? DEFAULT_POOL_CONNECTION_TIMEOUT),
    healthCheckInterval: positiveMs("healthCheckInterval", options.healthCheckInterval ?? DEFAULT_HEALTH_CHECK_INTERVAL),
    loadBalancingStrategy: strategy,
    queueCapacity: positiveInteger("queueCapacity", options.queueCapacity ?? DEFAULT_POOL_QUEUE_CAPACITY),
    errorWindow: positiveMs("errorWindow", options.errorWindow ?? DEFAULT_ERROR_WINDOW),
    idleTimeout: positiveMs("idleTimeout", options.idleTimeout ?? DEFAULT_IDLE_TIMEOUT),
    growInFlight: positiveInteger("growInFlight", options.growInFlight ?? DEFAULT_GROW_IN_FLIGHT),
  };
}

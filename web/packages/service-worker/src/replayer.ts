// The worker's replay of the offline queue, apart from the worker's globals so
// that it is unit tested against a real OfflineQueue (fake-indexeddb) and a
// fake gateway: opens the queue lazily (reopening after a failure), runs one
// `replayOverHttp` at a time (SingleFlight: a trigger during a replay joins it
// and makes it run once more), holds the token in memory, and never rejects.
//
// Not here: which events trigger a replay (sw.ts), what is queued (the page).

import { type Logger, OfflineQueue, type ReplayOverHttpOptions, type ReplayResult, replayOverHttp } from "@tether/client";
import { SingleFlight } from "./single-flight.js";

/** What a replay did; `remaining` is null when it failed before it could count the queue. */
export interface ReplayOutcome {
  readonly sent: number;
  readonly rejected: ReplayResult["rejected"];
  readonly remaining: number | null;
  /** Why it stopped early; every unsent message is still queued. */
  readonly error?: string;
}

export interface ReplayerOptions {
  /** Full URL of POST /api/v1/messages, `client_id` included (see config.ts). */
  readonly endpoint: string;
  /** The queue's database. */
  readonly dbName: string;
  /** Default: `OfflineQueue.open({dbName})`; tests pass a fake-indexeddb factory through it. */
  readonly openQueue?: (dbName: string) => Promise<OfflineQueue>;
  /** Default `globalThis.fetch`. */
  readonly fetch?: typeof fetch;
  /** Called after every replay that reached the queue (the worker tells its pages). */
  readonly onResult?: (outcome: ReplayOutcome) => void | Promise<void>;
  readonly log?: Logger;
}

const noLog: Logger = () => undefined;

export class Replayer {
  /** The bearer token for replays (memory only); null: none. */
  token: string | null = null;
  private queue: Promise<OfflineQueue> | null = null;
  private readonly flight: SingleFlight<ReplayOutcome>;
  private readonly log: Logger;

  constructor(private readonly options: ReplayerOptions) {
    this.log = options.log ?? noLog;
    this.flight = new SingleFlight(() => this.once(), mergeOutcomes, (e) => this.failure(e));
  }

  /** A replay that threw (the queue could not be opened or read): nothing was sent by it. */
  private failure(e: unknown): ReplayOutcome {
    const error = `replay failed: ${e instanceof Error ? e.message : String(e)}`;
    this.log(error);
    return { sent: 0, rejected: [], remaining: null, error };
  }

  /** Whether a replay is in progress. */
  get running(): boolean {
    return this.flight.running;
  }

  /**
   * Replays the queue, or joins the replay in progress (which then runs once
   * more). Never rejects: a failure comes back as `error`.
   */
  async run(reason: string): Promise<ReplayOutcome> {
    this.log("replay requested:", reason);
    try {
      return await this.flight.run();
    } catch (e) {
      // Only a throwing merge gets here: failed runs are outcomes already.
      return this.failure(e);
    }
  }

  /** Closes the queue (tests; a worker simply stops). */
  async close(): Promise<void> {
    const q = this.queue;
    this.queue = null;
    if (q !== null) (await q.catch(() => null))?.close();
  }

  private openQueue(): Promise<OfflineQueue> {
    if (this.queue === null) {
      const open = this.options.openQueue ?? ((dbName: string) => OfflineQueue.open({ dbName }));
      const opening = open(this.options.dbName);
      opening.catch(() => {
        if (this.queue === opening) this.queue = null;
      });
      this.queue = opening;
    }
    return this.queue;
  }

  private async once(): Promise<ReplayOutcome> {
    const q = await this.openQueue();
    const size = await q.size();
    if (size === 0) return { sent: 0, rejected: [], remaining: 0 };
    this.log("replaying", size, "queued message(s) to", this.options.endpoint);
    const options: ReplayOverHttpOptions = { endpoint: this.options.endpoint };
    if (this.options.fetch !== undefined) options.fetch = this.options.fetch;
    if (this.token !== null) options.token = this.token;
    const result = await replayOverHttp(q, options);
    this.log("replay done", result);
    const outcome: ReplayOutcome = result;
    try {
      await this.options.onResult?.(outcome);
    } catch (e) {
      // Telling pages is a courtesy: it must not turn a done replay into a failed one.
      this.log("telling pages failed", e);
    }
    return outcome;
  }
}

/** Two consecutive runs as one: what both sent and rejected, what the later one left. */
export function mergeOutcomes(earlier: ReplayOutcome, later: ReplayOutcome): ReplayOutcome {
  const merged = {
    sent: earlier.sent + later.sent,
    rejected: [...earlier.rejected, ...later.rejected],
    remaining: later.remaining,
  };
  return later.error === undefined ? merged : { ...merged, error: later.error };
}

/**
 * Whether a `sync` event should fail so that the browser schedules it again:
 * the replay stopped early (network, 5xx, 401…) and left messages queued.
 */
export function syncShouldRetry(outcome: ReplayOutcome): boolean {
  return outcome.error !== undefined && outcome.remaining !== 0;
}

// One replay at a time. Triggers (a `sync` event, worker start, `activate`, a
// page's `tether-sync` message) can arrive together; two replays running at
// once would POST the same queued frames twice. The gateway would deduplicate
// them, but it is wasted work and makes the page's queue view flicker. So a
// trigger that arrives while a replay runs joins it, and marks it to run once
// more when it ends: a message queued after the running replay read the queue
// is then still sent by the promise the trigger waits for.

export class SingleFlight<R> {
  private current: Promise<R> | null = null;
  private again = false;

  /**
   * `merge(earlier, later)` combines the results of the runs one call spans
   * (default: the later one), so that a caller that joined hears about every
   * run it waited for. `failed(error)`, when given, turns a failed run into a
   * result that is merged like any other, so that a failing rerun does not
   * hide what the earlier runs did; without it a failed last run rejects.
   */
  constructor(
    private readonly task: () => Promise<R>,
    private readonly merge: (earlier: R, later: R) => R = (_earlier, later) => later,
    private readonly failed?: (error: unknown) => R,
  ) {}

  /** Whether a run is in progress. */
  get running(): boolean {
    return this.current !== null;
  }

  /**
   * Runs the task, or joins the run in progress (which then runs the task once
   * more before it settles). Resolves with the runs' merged results; rejects
   * with the last run's error.
   */
  run(): Promise<R> {
    if (this.current !== null) {
      this.again = true;
      return this.current;
    }
    // Started in a microtask so that `current` is set before the loop can clear it.
    const p = Promise.resolve().then(() => this.loop());
    this.current = p;
    return p;
  }

  private async loop(): Promise<R> {
    let merged: { value: R } | null = null;
    for (;;) {
      this.again = false;
      let result: { ok: true; value: R } | { ok: false; error: unknown };
      try {
        const value = await this.task();
        result = { ok: true, value: merged === null ? value : this.merge(merged.value, value) };
        merged = { value: result.value };
      } catch (error) {
        if (this.failed === undefined) {
          result = { ok: false, error };
        } else {
          const value = this.failed(error);
          result = { ok: true, value: merged === null ? value : this.merge(merged.value, value) };
          merged = { value: result.value };
        }
      }
      if (this.again) continue;
      // Cleared here, synchronously with the last check of `again`, so that no
      // trigger can join a run that will not look at `again` any more.
      this.current = null;
      if (result.ok) return result.value;
      throw result.error;
    }
  }
}

// A bounded log of what the parts of a scenario said (gateway stderr, browser
// console, Service Worker console, page errors), printed only when a test
// fails, so that a failure explains itself without rerunning with debug on.

/** Lines kept; older ones are dropped (a failure is about the last moments). */
export const MAX_LINES = 2000;

export class Log {
  private readonly lines: string[] = [];
  private readonly started = Date.now();

  add(source: string, line: string): void {
    const t = ((Date.now() - this.started) / 1000).toFixed(3).padStart(8);
    this.lines.push(`${t} ${source} ${line}`);
    if (this.lines.length > MAX_LINES) this.lines.splice(0, this.lines.length - MAX_LINES);
  }

  /** Everything kept, oldest first. */
  text(): string {
    return this.lines.join("\n");
  }

  /** Prints the log (on failure). */
  dump(title: string): void {
    console.error(`----- ${title} (last ${this.lines.length} lines) -----\n${this.text()}\n----- end -----`);
  }
}

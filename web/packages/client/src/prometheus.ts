// Prometheus text exposition (format 0.0.4): the writing that the client's
// metrics (metrics.ts) and the pool's (pool/metrics.ts) share. Internal: not
// exported from the package.
//
// Not here: what the series are (their modules) or serving the text.

/** The metric types written here. */
export type MetricType = "counter" | "gauge" | "histogram";

/** Prometheus number text: integers plainly, others with JS's shortest round-trip form. */
export function formatNumber(n: number): string {
  if (Number.isNaN(n)) return "NaN";
  if (n === Infinity) return "+Inf";
  if (n === -Infinity) return "-Inf";
  return String(n);
}

/** A label value with `\`, newline and `"` escaped, for inside `{name="…"}`. */
export function escapeLabel(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
}

/** Collects the lines of an exposition; `text()` joins them. */
export class PrometheusWriter {
  private readonly lines: string[] = [];

  /**
   * A metric family: its `# HELP` and `# TYPE` lines, then one sample per
   * `[labels, value]` (`labels` is `""` or a whole `{…}`); there may be none.
   */
  family(name: string, type: MetricType, help: string, samples: readonly (readonly [string, number])[]): void {
    this.header(name, type, help);
    for (const [labels, value] of samples) this.sample(name, labels, value);
  }

  /** A family of one sample without labels. */
  series(name: string, type: "counter" | "gauge", help: string, value: number): void {
    this.family(name, type, help, [["", value]]);
  }

  /**
   * A histogram family: a `_bucket` sample per upper bound in `bounds` with
   * its cumulative count in `cumulative` (0 where missing), the `+Inf` bucket
   * (`count`), then `_sum` and `_count`.
   */
  histogram(name: string, help: string, bounds: readonly number[], cumulative: readonly number[], sum: number, count: number): void {
    this.header(name, "histogram", help);
    bounds.forEach((le, i) => {
      this.sample(`${name}_bucket`, `{le="${formatNumber(le)}"}`, cumulative[i] ?? 0);
    });
    this.sample(`${name}_bucket`, '{le="+Inf"}', count);
    this.sample(`${name}_sum`, "", sum);
    this.sample(`${name}_count`, "", count);
  }

  /** The exposition: every line so far, each ending in a newline. */
  text(): string {
    return `${this.lines.join("\n")}\n`;
  }

  private header(name: string, type: MetricType, help: string): void {
    this.lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
  }

  private sample(name: string, labels: string, value: number): void {
    this.lines.push(`${name}${labels} ${formatNumber(value)}`);
  }
}

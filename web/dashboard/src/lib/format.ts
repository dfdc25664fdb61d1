// Formatting for people: durations, sizes, percentages, clock times. Pure
// functions, so that every view shows the same units and the tests can pin them.

/** "3 s ago", "4 min ago", "2 h ago"; "just now" under a second; `–` for null. */
export function ago(ms: number | null, now: number): string {
  if (ms === null) return "–";
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 1) return "just now";
  if (s < 60) return `${String(s)} s ago`;
  const min = Math.floor(s / 60);
  if (min < 60) return `${String(min)} min ago`;
  const h = Math.floor(min / 60);
  if (h < 48) return `${String(h)} h ago`;
  return `${String(Math.floor(h / 24))} d ago`;
}

/** Seconds as "1 d 2 h", "3 h 4 min", "5 min 6 s", "7 s". */
export function uptime(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  const d = Math.floor(s / 86_400);
  const h = Math.floor((s % 86_400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  const r = s % 60;
  if (d > 0) return `${String(d)} d ${String(h)} h`;
  if (h > 0) return `${String(h)} h ${String(m)} min`;
  if (m > 0) return `${String(m)} min ${String(r)} s`;
  return `${String(r)} s`;
}

const UNITS = ["B", "KiB", "MiB", "GiB", "TiB"] as const;

/** Bytes with a binary unit and up to one decimal: "512 B", "1.5 KiB", "87.0 MiB". */
export function bytes(n: number): string {
  let value = Math.max(0, n);
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${String(Math.round(value))} B` : `${value.toFixed(1)} ${UNITS[unit] ?? ""}`;
}

/** "12.3 %" */
export function percent(n: number): string {
  return `${n.toFixed(1)} %`;
}

/** Milliseconds: "0.4 ms", "35 ms", "1.20 s"; `–` for null. */
export function millis(ms: number | null): string {
  if (ms === null) return "–";
  if (ms < 10) return `${ms.toFixed(1)} ms`;
  if (ms < 1000) return `${String(Math.round(ms))} ms`;
  return `${(ms / 1000).toFixed(2)} s`;
}

/** A rate: "0", "12.5/s", "1.2k/s". */
export function rate(perSecond: number): string {
  if (perSecond >= 10_000) return `${(perSecond / 1000).toFixed(1)}k/s`;
  if (perSecond >= 100) return `${String(Math.round(perSecond))}/s`;
  return `${perSecond.toFixed(1)}/s`;
}

function pad(n: number, width = 2): string {
  return String(n).padStart(width, "0");
}

/** Local wall-clock time with milliseconds: "14:03:07.123". */
export function clockTime(ms: number): string {
  const d = new Date(ms);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

/** JSON on one line, cut to `max` characters with an ellipsis. */
export function preview(value: unknown, max = 160): string {
  let text: string;
  try {
    text = JSON.stringify(value) ?? "undefined";
  } catch {
    text = String(value);
  }
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

// A live time-series chart: uPlot on a canvas, resized with its container,
// redrawn when the data changes, rebuilt when the theme or series change.
// The canvas is invisible to screen readers, so the figure carries a text
// summary (`summary`) of the latest values.

import { type ReactNode, useEffect, useRef } from "react";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import type { Aligned } from "../lib/system-history.js";
import type { Theme } from "../lib/theme.js";

export interface ChartSeries {
  readonly label: string;
}

export interface ChartProps {
  readonly title: string;
  /** Read out instead of the canvas, e.g. "CPU 12.5 % on gw-1". */
  readonly summary: string;
  readonly series: readonly ChartSeries[];
  readonly data: Aligned;
  /** Formats a y value for the axis and the legend. */
  readonly format: (v: number) => string;
  readonly theme: Theme;
  readonly testId?: string;
  readonly height?: number;
}

function cssVar(name: string, fallback: string): string {
  const v = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  return v === "" ? fallback : v;
}

const PALETTE = ["--chart-1", "--chart-2", "--chart-3", "--chart-4", "--chart-5", "--chart-6"];

export function Chart({ title, summary, series, data, format, theme, testId, height = 180 }: ChartProps): ReactNode {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const labels = series.map((s) => s.label).join("\u0000");
  const formatRef = useRef(format);
  formatRef.current = format;
  const dataRef = useRef(data);
  dataRef.current = data;

  // (Re)build on theme or series change.
  useEffect(() => {
    const el = box.current;
    if (el === null) return undefined;
    const text = cssVar("--muted", "#666");
    const grid = cssVar("--grid", "#ddd");
    const axis = { stroke: text, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 } };
    const opts: uPlot.Options = {
      width: Math.max(200, el.clientWidth),
      height,
      legend: { show: true, live: true },
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: true } },
      axes: [
        axis,
        { ...axis, size: 76, values: (_u, vals) => vals.map((v) => (v === null ? "" : formatRef.current(v))) },
      ],
      series: [
        {},
        ...labels.split("\u0000").map((label, i) => ({
          label,
          stroke: cssVar(PALETTE[i % PALETTE.length] ?? "--chart-1", "#3b82f6"),
          width: 2,
          spanGaps: true,
          points: { show: false },
          value: (_u: uPlot, v: number | null) => (v === null ? "–" : formatRef.current(v)),
        })),
      ],
    };
    const u = new uPlot(opts, dataRef.current as uPlot.AlignedData, el);
    plot.current = u;
    const resize = new ResizeObserver(() => {
      u.setSize({ width: Math.max(200, el.clientWidth), height });
    });
    resize.observe(el);
    return () => {
      resize.disconnect();
      u.destroy();
      plot.current = null;
    };
  }, [theme, labels, height]);

  useEffect(() => {
    plot.current?.setData(data as uPlot.AlignedData);
  }, [data]);

  return (
    <figure className="chart" data-testid={testId}>
      <figcaption>{title}</figcaption>
      <div ref={box} role="img" aria-label={`${title}: ${summary}`} />
    </figure>
  );
}

// Light and dark themes: the system's preference until the user picks one,
// which is kept in localStorage. The choice is the `data-theme` attribute of
// <html>; styles.css keys its colours on it (and on prefers-color-scheme while
// it is absent, so that the first paint is already right).

import { useCallback, useSyncExternalStore } from "react";

export type Theme = "light" | "dark";
export const THEME_KEY = "tether.dashboard.theme";

function stored(): Theme | null {
  try {
    const v = globalThis.localStorage.getItem(THEME_KEY);
    return v === "light" || v === "dark" ? v : null;
  } catch {
    return null;
  }
}

function systemTheme(): Theme {
  return window.matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
}

/** The theme in force: the stored choice, else the system's. */
export function currentTheme(): Theme {
  const attr = document.documentElement.dataset["theme"];
  if (attr === "light" || attr === "dark") return attr;
  return stored() ?? systemTheme();
}

const listeners = new Set<() => void>();

function subscribe(listener: () => void): () => void {
  listeners.add(listener);
  const media = window.matchMedia("(prefers-color-scheme: dark)");
  media.addEventListener("change", listener);
  return () => {
    listeners.delete(listener);
    media.removeEventListener("change", listener);
  };
}

/** Applies the stored choice (if any) before the first render. */
export function applyStoredTheme(): void {
  const t = stored();
  if (t !== null) document.documentElement.dataset["theme"] = t;
}

/** Picks `theme` for good (this browser). */
export function setTheme(theme: Theme): void {
  document.documentElement.dataset["theme"] = theme;
  try {
    globalThis.localStorage.setItem(THEME_KEY, theme);
  } catch {
    // not kept: the choice lasts for this page
  }
  for (const l of listeners) l();
}

/** The theme in force and a toggle. */
export function useTheme(): [Theme, () => void] {
  const theme = useSyncExternalStore(subscribe, currentTheme, () => "light" as const);
  const toggle = useCallback(() => {
    setTheme(currentTheme() === "dark" ? "light" : "dark");
  }, []);
  return [theme, toggle];
}

// cacheKindFor: what the app-shell cache handles, and what it never touches.
import { describe, expect, it } from "vitest";
import { type RequestInfo, cacheKindFor, isUncachedPath, staleCaches } from "../src/routes.js";

const ORIGIN = "https://app.example";
const SCRIPT = "/tether-sw.js";

function req(url: string, extra: Partial<RequestInfo> = {}): RequestInfo {
  return { url, method: "GET", mode: "no-cors", destination: "", ...extra };
}

describe("cacheKindFor", () => {
  it("sends navigations to the page cache, query included", () => {
    expect(cacheKindFor(req(`${ORIGIN}/?ws=x`, { mode: "navigate", destination: "document" }), ORIGIN, SCRIPT)).toBe("page");
    expect(cacheKindFor(req(`${ORIGIN}/deep/link`, { mode: "navigate" }), ORIGIN, SCRIPT)).toBe("page");
  });

  it("sends same-origin scripts and styles to the asset cache", () => {
    expect(cacheKindFor(req(`${ORIGIN}/assets/index-abc.js`, { destination: "script" }), ORIGIN, SCRIPT)).toBe("asset");
    expect(cacheKindFor(req(`${ORIGIN}/assets/index-abc.css`, { destination: "style" }), ORIGIN, SCRIPT)).toBe("asset");
  });

  it("never caches the API, the WebSocket endpoints or the worker itself", () => {
    for (const path of ["/api/v1/messages", "/api/v1/channels/x/history", "/ws", "/ws/dashboard", SCRIPT]) {
      expect(cacheKindFor(req(`${ORIGIN}${path}`, { mode: "navigate" }), ORIGIN, SCRIPT)).toBeNull();
      expect(cacheKindFor(req(`${ORIGIN}${path}`, { destination: "script" }), ORIGIN, SCRIPT)).toBeNull();
    }
  });

  it("leaves other origins, other methods and other destinations to the network", () => {
    expect(cacheKindFor(req("https://cdn.example/lib.js", { destination: "script" }), ORIGIN, SCRIPT)).toBeNull();
    expect(cacheKindFor(req(`${ORIGIN}/form`, { method: "POST", mode: "navigate" }), ORIGIN, SCRIPT)).toBeNull();
    expect(cacheKindFor(req(`${ORIGIN}/logo.png`, { destination: "image" }), ORIGIN, SCRIPT)).toBeNull();
    expect(cacheKindFor(req(`${ORIGIN}/data.json`), ORIGIN, SCRIPT)).toBeNull();
  });

  it("does not mistake paths that merely start like the API", () => {
    expect(isUncachedPath("/apiary")).toBe(false);
    expect(isUncachedPath("/wsx")).toBe(false);
    expect(isUncachedPath("/api")).toBe(true);
  });
});

describe("staleCaches", () => {
  it("lists only our caches of other versions", () => {
    expect(staleCaches(["tether-pages-v0", "tether-pages-v1", "tether-assets-v1", "other-app", "workbox-precache"])).toEqual([
      "tether-pages-v0",
    ]);
  });
});

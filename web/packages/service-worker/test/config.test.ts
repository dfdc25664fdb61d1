// parseConfig: the worker's settings from its registration URL.
import { describe, expect, it } from "vitest";
import { DEFAULT_DB_NAME, SYNC_TAG, parseConfig } from "../src/config.js";

const BASE = "https://app.example/tether-sw.js";

describe("the shared names", () => {
  it("are the page's: database tether-offline, sync tag tether-offline-sync", () => {
    expect(DEFAULT_DB_NAME).toBe("tether-offline");
    expect(SYNC_TAG).toBe("tether-offline-sync");
  });
});

describe("parseConfig", () => {
  it("uses the defaults for a bare script URL", () => {
    expect(parseConfig(BASE)).toEqual({
      clientId: null,
      endpoint: "https://app.example/api/v1/messages",
      dbName: DEFAULT_DB_NAME,
      debug: false,
      warnings: [],
    });
  });

  it("reads client_id, endpoint, db and debug, and puts client_id into the endpoint", () => {
    const c = parseConfig(`${BASE}?client_id=user%201&endpoint=/gw/api/v1/messages&db=my-queue&debug=1`);
    expect(c.clientId).toBe("user 1");
    expect(c.endpoint).toBe("https://app.example/gw/api/v1/messages?client_id=user+1");
    expect(new URL(c.endpoint).searchParams.get("client_id")).toBe("user 1");
    expect(c.dbName).toBe("my-queue");
    expect(c.debug).toBe(true);
    expect(c.warnings).toEqual([]);
  });

  it("overwrites a client_id already in the endpoint and keeps other endpoint parameters", () => {
    const endpoint = encodeURIComponent("https://gw.example/api/v1/messages?client_id=other&x=1");
    const c = parseConfig(`${BASE}?client_id=me&endpoint=${endpoint}`);
    expect(c.endpoint).toBe("https://gw.example/api/v1/messages?client_id=me&x=1");
  });

  it("replaces bad values by the defaults and says why", () => {
    const c = parseConfig(`${BASE}?client_id=${encodeURIComponent("é")}&endpoint=javascript:alert(1)&db=%20`);
    expect(c.clientId).toBeNull();
    expect(c.endpoint).toBe("https://app.example/api/v1/messages");
    expect(c.dbName).toBe(DEFAULT_DB_NAME);
    expect(c.warnings).toHaveLength(3);
  });

  it("refuses a client_id over 128 characters", () => {
    expect(parseConfig(`${BASE}?client_id=${"a".repeat(129)}`).clientId).toBeNull();
    expect(parseConfig(`${BASE}?client_id=${"a".repeat(128)}`).clientId).toBe("a".repeat(128));
  });

  it.each([
    ["1", true],
    ["true", true],
    ["on", true],
    ["0", false],
    ["", false],
    ["no", false],
  ])("debug=%s is %s", (value, expected) => {
    expect(parseConfig(`${BASE}?debug=${value}`).debug).toBe(expected);
  });
});

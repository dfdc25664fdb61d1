// parsePageMessage: what a page may ask the worker.
import { describe, expect, it } from "vitest";
import { parsePageMessage } from "../src/messages.js";

describe("parsePageMessage", () => {
  it("reads a sync request", () => {
    expect(parsePageMessage({ type: "tether-sync" })).toEqual({ type: "sync" });
  });

  it("reads a token, and a cleared token", () => {
    expect(parsePageMessage({ type: "tether-token", token: "abc" })).toEqual({ type: "token", token: "abc" });
    expect(parsePageMessage({ type: "tether-token", token: null })).toEqual({ type: "token", token: null });
    expect(parsePageMessage({ type: "tether-token", token: "" })).toEqual({ type: "token", token: null });
    expect(parsePageMessage({ type: "tether-token" })).toEqual({ type: "token", token: null });
  });

  it.each([null, undefined, "tether-sync", 42, [], {}, { type: "other" }, { type: "tether-token", token: 5 }])(
    "ignores %j",
    (data) => {
      expect(parsePageMessage(data)).toBeNull();
    },
  );
});

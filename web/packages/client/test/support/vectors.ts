// The golden protocol vectors (crates/protocol/tests/vectors/, described in its
// README.md), read once for the suites that check them (protocol.test.ts,
// schemas.test.ts), and the JSON helpers both need to compare against them.

import { readFileSync } from "node:fs";

export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
export type JsonObject = { [k: string]: Json };

/** A `client-valid.json` case: `frame` must parse to a message matching `expect`. */
export interface ValidCase {
  name: string;
  frame: string;
  expect: JsonObject;
}
/** A `client-invalid.json` case: `frame` must be refused with `error`. */
export interface InvalidCase {
  name: string;
  frame: string;
  error: { code: string; id: string | null };
}
/** A `server.json` case: a server frame to parse and re-serialize unchanged. */
export interface ServerCase {
  name: string;
  frame: JsonObject;
}
/** `codes.json`: the error codes and close codes of the protocol. */
export interface Codes {
  error_codes: { code: string; retryable: boolean }[];
  close_codes: { code: number; name: string }[];
}

/** The parsed JSON of one vector file, e.g. `load<ValidCase[]>("client-valid.json")`. */
function load<T>(file: string): T {
  const url = new URL(`../../../../../crates/protocol/tests/vectors/${file}`, import.meta.url);
  return JSON.parse(readFileSync(url, "utf8")) as T;
}

export const validCases = load<ValidCase[]>("client-valid.json");
export const invalidCases = load<InvalidCase[]>("client-invalid.json");
export const serverCases = load<ServerCase[]>("server.json");
export const codes = load<Codes>("codes.json");

export function isJsonObject(v: unknown): v is JsonObject {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Equality of JSON values (key order ignored; JS numbers already compare by value). */
export function jsonEq(a: unknown, b: unknown): boolean {
  if (Array.isArray(a) || Array.isArray(b)) {
    return Array.isArray(a) && Array.isArray(b) && a.length === b.length && a.every((x, i) => jsonEq(x, b[i]));
  }
  if (isJsonObject(a) || isJsonObject(b)) {
    if (!isJsonObject(a) || !isJsonObject(b)) return false;
    const ka = Object.keys(a);
    return ka.length === Object.keys(b).length && ka.every((k) => Object.hasOwn(b, k) && jsonEq(a[k], b[k]));
  }
  return a === b;
}

// @tether/client: the framework-agnostic core of the browser SDK.
export * from "./protocol.js";
export * from "./backoff.js";
export * from "./circuit.js";
export * from "./state.js";
export * from "./connection.js";
export * from "./debug.js";
export * from "./metrics.js";

// @tether/client: the framework-agnostic core of the browser SDK.
export * from "./protocol.js";
export * from "./schemas.js";
export * from "./backoff.js";
export * from "./circuit.js";
export * from "./state.js";
export * from "./connection.js";
export * from "./debug.js";
export * from "./online.js";
export * from "./offline-queue.js";
export * from "./offline-sync.js";
export * from "./metrics.js";
export * from "./pool.js";

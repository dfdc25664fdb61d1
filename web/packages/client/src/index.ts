// @tether/client: the framework-agnostic core of the browser SDK.
export * from "./protocol";
export * from "./backoff";
export * from "./circuit";
export * from "./state";
export * from "./connection";

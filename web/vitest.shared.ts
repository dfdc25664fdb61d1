// Shared Vitest settings: resolve workspace packages to their TypeScript
// sources (the "source" export condition) so tests never need a build first.
import { defaultClientConditions, defaultServerConditions } from "vite";

export const sourceConditions = {
  resolve: { conditions: ["source", ...defaultClientConditions] },
  ssr: { resolve: { conditions: ["source", ...defaultServerConditions] } },
};

// ESLint flat config: recommended rules plus typescript-eslint's strict set.
import js from "@eslint/js";
import tseslint from "typescript-eslint";

export default tseslint.config(
  { ignores: ["**/node_modules/**", "**/dist/**", ".readme-examples/**"] },
  js.configs.recommended,
  ...tseslint.configs.strict,
  {
    // Node scripts (plain JavaScript run by node).
    files: ["scripts/**/*.mjs", "*/scripts/**/*.mjs"],
    languageOptions: { globals: { console: "readonly", process: "readonly", URL: "readonly" } },
  },
);

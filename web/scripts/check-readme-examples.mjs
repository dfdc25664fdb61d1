#!/usr/bin/env node
// Type-checks the TypeScript examples in the packages' READMEs, so that the
// documentation cannot drift from the API. Every ```ts / ```tsx block of
// packages/*/README.md becomes its own module under .readme-examples/ and the
// lot is compiled with `tsc --noEmit` under the workspace's strict settings
// (workspace packages resolve to their sources). A block whose opening fence
// says `no-check` (```ts no-check) is skipped: use it for shell-like fragments.

import { spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const web = join(dirname(fileURLToPath(import.meta.url)), "..");
const out = join(web, ".readme-examples");
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });

const fence = /^```(tsx|typescript|ts)\b([^\n]*)\n([\s\S]*?)^```$/gm;
let count = 0;
for (const pkg of readdirSync(join(web, "packages"))) {
  const readme = join(web, "packages", pkg, "README.md");
  if (!existsSync(readme)) {
    console.error(`packages/${pkg} has no README.md`);
    process.exit(1);
  }
  const text = readFileSync(readme, "utf8");
  let n = 0;
  for (const m of text.matchAll(fence)) {
    if (m[2].includes("no-check")) continue;
    n += 1;
    const line = text.slice(0, m.index).split("\n").length;
    const ext = m[1] === "tsx" ? "tsx" : "ts";
    const body = `// packages/${pkg}/README.md line ${line}\n${m[3]}\nexport {};\n`;
    writeFileSync(join(out, `${pkg}-${n}.${ext}`), body);
  }
  count += n;
}

writeFileSync(
  join(out, "tsconfig.json"),
  JSON.stringify(
    {
      extends: "../tsconfig.base.json",
      compilerOptions: { noEmit: true, noUnusedLocals: false, types: [] },
      include: ["./*.ts", "./*.tsx"],
    },
    null,
    2,
  ),
);

const tsc = spawnSync(process.execPath, [join(web, "node_modules/typescript/bin/tsc"), "-p", out], { stdio: "inherit" });
if (tsc.status !== 0) {
  console.error(`README examples failed to type-check (files in ${out})`);
  process.exit(1);
}
console.log(`${count} README examples type-check`);

// The annotation page's copy of this client (node/ui/vendor/magicoin-client.js) is exactly what the
// current source and the locked dependencies build, and its licence note names every inlined package.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import { BUNDLE_PATH, LICENCES_PATH, buildBundle } from "../scripts/build-ui.js";

test("the vendored browser bundle and its licence note are up to date (npm run build:ui)", async () => {
  const { text, licences, packages } = await buildBundle();
  assert.ok(readFileSync(BUNDLE_PATH, "utf8") === text, `${BUNDLE_PATH} is stale: run \`npm run build:ui\` in clients/js`);
  assert.equal(readFileSync(LICENCES_PATH, "utf8"), licences);
  assert.ok(packages.some((p) => p.name === "viem"));
  assert.ok(!/\beval\(|new Function\(/.test(text), "the page's CSP forbids eval");
});

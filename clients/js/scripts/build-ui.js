// Builds the browser bundle of this client that the annotation page (node/ui) signs with:
// node/ui/vendor/magicoin-client.js, one ES module (viem and its dependencies inlined, minified).
// `npm run build:ui` writes it; test/bundle.test.js rebuilds it in memory and checks the committed
// file is exactly that, so the page never runs stale client code.
import { readFileSync, readdirSync, writeFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

import { build } from "esbuild";

const PACKAGE_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
export const BUNDLE_PATH = resolve(PACKAGE_ROOT, "..", "..", "node", "ui", "vendor", "magicoin-client.js");
export const LICENCES_PATH = resolve(PACKAGE_ROOT, "..", "..", "node", "ui", "vendor", "magicoin-client-LICENSES.md");

/** The bundle's text, and the npm packages inlined in it (for the licence note). */
export async function buildBundle() {
  const result = await build({
    entryPoints: [join(PACKAGE_ROOT, "src", "index.js")],
    bundle: true, format: "esm", platform: "browser", target: "es2022", minify: true,
    legalComments: "none", write: false, metafile: true, absWorkingDir: PACKAGE_ROOT, logLevel: "silent",
  });
  const packageDirs = new Set();
  for (const input of Object.keys(result.metafile.inputs)) {
    const match = /^(.*node_modules\/(?:@[^/]+\/)?[^/]+)\//.exec(input);
    if (match) packageDirs.add(match[1]);
  }
  const packages = [...packageDirs].sort().map((dir) => {
    const manifest = JSON.parse(readFileSync(join(PACKAGE_ROOT, dir, "package.json"), "utf8"));
    const licenceFile = readdirSync(join(PACKAGE_ROOT, dir)).find((name) => /^licen[cs]e/i.test(name));
    const licence = licenceFile ? readFileSync(join(PACKAGE_ROOT, dir, licenceFile), "utf8").trim() : `(no licence file; package.json says ${manifest.license})`;
    return { name: manifest.name, version: manifest.version, license: manifest.license, licence };
  });
  const banner = "// @magicoin/client for the browser (clients/js, built by `npm run build:ui`; licences: magicoin-client-LICENSES.md)\n";
  return { text: banner + result.outputFiles[0].text, licences: formatLicences(packages), packages };
}

/** The licence note that ships beside the bundle: every npm package inlined in it, with its licence text. */
function formatLicences(packages) {
  const lines = [
    "# Licences of magicoin-client.js", "",
    "`magicoin-client.js` is clients/js (`@magicoin/client`) bundled by esbuild (`npm run build:ui` in clients/js)",
    "with the npm packages below inlined, at the versions clients/js/package-lock.json pins.", "",
  ];
  for (const { name, version, license, licence } of packages) {
    lines.push(`## ${name}@${version} (${license})`, "", "```", licence, "```", "");
  }
  return lines.join("\n");
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { text, licences, packages } = await buildBundle();
  writeFileSync(BUNDLE_PATH, text);
  writeFileSync(LICENCES_PATH, licences);
  console.log(`${relative(process.cwd(), BUNDLE_PATH)}: ${text.length} bytes; inlined: ${packages.map((p) => `${p.name}@${p.version}`).join(", ")}`);
}

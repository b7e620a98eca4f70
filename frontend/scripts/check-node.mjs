// Checks the running Node.js against package.json "engines".node before npm and Vite run, with one
// clear message instead of npm's EBADENGINE warnings and a build that fails further on.
// Usage: node scripts/check-node.mjs [version]   (the version defaults to this Node's own)
// The range grammar is the part of semver's that engines fields use: alternatives joined by "||",
// each a space-separated list of comparators (>=1.2.3, >1.2, <=2, <2, =1.2.3, 1.2.3, ^1.2.3, ~1.2.3).
import { readFileSync } from 'node:fs';

const parse = (text) => text.replace(/^v/, '').split('.').map((part) => Number.parseInt(part, 10) || 0);

function compare(a, b) {
  for (let i = 0; i < 3; i++) {
    const d = (a[i] ?? 0) - (b[i] ?? 0);
    if (d !== 0) return Math.sign(d);
  }
  return 0;
}

function satisfies(version, comparator) {
  const [, op, bound] = /^(>=|<=|>|<|=|\^|~)?\s*v?(\d+(?:\.\d+){0,2})$/.exec(comparator) ?? [];
  if (bound === undefined) throw new Error(`cannot read the engines range part ${JSON.stringify(comparator)}`);
  const b = parse(bound);
  const c = compare(version, b);
  switch (op) {
    case '>=': return c >= 0;
    case '>': return c > 0;
    case '<=': return c <= 0;
    case '<': return c < 0;
    case '^': return c >= 0 && version[0] === b[0]; // major 0 ranges are not used for Node
    case '~': return c >= 0 && version[0] === b[0] && version[1] === b[1];
    default: return c === 0;
  }
}

function nodeSatisfies(version, range) {
  const v = parse(version);
  return range.split('||').some((alternative) =>
    alternative.trim().split(/\s+/).every((comparator) => satisfies(v, comparator)));
}

const range = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')).engines.node;
const version = process.argv[2] ?? process.versions.node;
if (!nodeSatisfies(version, range)) {
  console.error(
    `Node.js ${version} cannot build the front end: it needs ${range} ` +
    '(frontend/package.json "engines", what Vite 8 and Vitest 4 support).\n' +
    'Install one of those (an LTS from https://nodejs.org/, or `nvm install 22`) and run make again.',
  );
  process.exit(1);
}

// The Node half of the browser-test harness (the Python half is tests/browser/harness.py).
//
// A scenario script imports `scenario` and hands it an async function; pytest runs it as
// `node tests/browser/<script>.mjs '<json params>'`. The harness starts Debian's Chromium headless
// on a fresh profile, gives the function a page and helpers, and writes `result.json` in
// `params.out_dir`: {ok, result (what the function returned), error, console, page_errors,
// failed_requests, csp_violations, screenshots, timings}. A failing scenario also leaves
// `failure.png`.
//
// Requests that fail (other than ones a navigation cancelled) and HTTP 5xx responses are listed in
// failed_requests; uncaught page errors in page_errors; what the page's Content-Security-Policy
// blocked (Chromium's console message for each violation, the page's or a worker's) in
// csp_violations.
//
//   import { scenario } from './harness.mjs';
//   await scenario(async ({ page, params, login, open, screenshot, mark }) => {
//     await login(params.username, params.password);
//     await open('#/projects');
//     await screenshot('projects');
//     return { title: await page.title() };
//   });

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, '..', '..');

// Flags from shared/docs/VIEWER.md: no sandbox (root in a container), no background traffic
// into the closed network, software WebGL through ANGLE/SwiftShader. Playwright adds --headless.
export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
  '--use-angle=swiftshader',
  '--enable-unsafe-swiftshader',
];

/** playwright-core from the front end's node_modules (tests/ has no package.json of its own). */
function loadPlaywright(frontendDir) {
  const require = createRequire(path.join(frontendDir, 'package.json'));
  try {
    return require('playwright-core');
  } catch (err) {
    throw new Error(
      `playwright-core is not installed in ${frontendDir}/node_modules: run \`make frontend\` ` +
        `(npm ci in frontend/). ${err.message}`,
    );
  }
}

/**
 * Pixel statistics of one workspace view's on-screen canvas (its 2D copy of the WebGL frame):
 * {width, height, distinct (grey levels of the red channel), mean}, or null without a canvas.
 */
export async function canvasStats(page, viewportId) {
  return page.evaluate((id) => {
    const cell = document.querySelector(`.vw-${id} canvas`);
    if (!cell) return null;
    const { width, height } = cell;
    const copy = document.createElement('canvas');
    copy.width = width;
    copy.height = height;
    const ctx = copy.getContext('2d');
    ctx.drawImage(cell, 0, 0);
    const data = ctx.getImageData(0, 0, width, height).data;
    const values = new Set();
    let sum = 0;
    for (let i = 0; i < data.length; i += 4) {
      values.add(data[i]);
      sum += data[i];
    }
    return { width, height, distinct: values.size, mean: sum / (data.length / 4) };
  }, viewportId);
}

/** The mean RGBA of a view's canvas over the 3x3 device pixels around a page point. */
export async function canvasPixel(page, viewportId, [x, y]) {
  return page.evaluate(
    ([id, px, py]) => {
      const canvas = document.querySelector(`.vw-${id} canvas`);
      const box = canvas.getBoundingClientRect();
      const scale = canvas.width / box.width;
      const cx = Math.round((px - box.left - window.scrollX) * scale);
      const cy = Math.round((py - box.top - window.scrollY) * scale);
      const data = canvas.getContext('2d').getImageData(cx - 1, cy - 1, 3, 3).data;
      const mean = [0, 0, 0, 0];
      for (let i = 0; i < data.length; i++) mean[i % 4] += data[i] / 9;
      return mean.map(Math.round);
    },
    [viewportId, x, y],
  );
}

/** A drag with the real mouse through `points` (page px): press at the first, release at the last. */
export async function stroke(page, points) {
  const [first, ...rest] = points;
  await page.mouse.move(first[0], first[1]);
  await page.mouse.down();
  for (const [x, y] of rest) await page.mouse.move(x, y, { steps: 4 });
  await page.mouse.up();
}

function errorText(err) {
  return err instanceof Error ? (err.stack ?? `${err.name}: ${err.message}`) : String(err);
}

/**
 * Runs `fn` in a fresh headless Chromium and records the outcome (see the top of the file).
 * params (JSON, argv[2]): base_url, out_dir (required); executable (default /usr/bin/chromium),
 * frontend_dir, viewport {width, height}, timeout_ms (per action, default 20000), plus whatever
 * the scenario needs.
 */
export async function scenario(fn) {
  const started = Date.now();
  const params = JSON.parse(process.argv[2] ?? '{}');
  for (const key of ['base_url', 'out_dir']) {
    if (!params[key]) throw new Error(`harness: params.${key} is required`);
  }
  const outDir = path.resolve(params.out_dir);
  fs.mkdirSync(outDir, { recursive: true });
  const record = {
    ok: false,
    result: null,
    error: null,
    console: [],
    page_errors: [],
    failed_requests: [],
    csp_violations: [],
    screenshots: [],
    timings: {},
  };
  const mark = (name) => {
    record.timings[name] = Date.now() - started;
  };
  const writeRecord = () =>
    fs.writeFileSync(path.join(outDir, 'result.json'), JSON.stringify(record, null, 2));

  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'browser-test-profile-'));
  let context = null;
  try {
    const { chromium } = loadPlaywright(params.frontend_dir ?? path.join(REPO, 'frontend'));
    context = await chromium.launchPersistentContext(profile, {
      executablePath: params.executable ?? '/usr/bin/chromium',
      headless: true,
      args: CHROMIUM_ARGS,
      baseURL: params.base_url,
      viewport: params.viewport ?? { width: 1280, height: 900 },
      deviceScaleFactor: 1,
      timezoneId: 'UTC',
      locale: 'en-US',
    });
    mark('launched');
    context.setDefaultTimeout(params.timeout_ms ?? 20000);
    const page = context.pages()[0] ?? (await context.newPage());
    page.on('console', (msg) => {
      record.console.push({ type: msg.type(), text: msg.text(), url: page.url() });
      if (msg.text().includes('Content Security Policy')) {
        record.csp_violations.push({ text: msg.text(), url: page.url() });
      }
    });
    page.on('pageerror', (err) => record.page_errors.push(errorText(err)));
    page.on('requestfailed', (request) => {
      // net::ERR_ABORTED: the page navigated away before the response (not a failure)
      if (request.failure()?.errorText === 'net::ERR_ABORTED') return;
      record.failed_requests.push({
        url: request.url(),
        method: request.method(),
        failure: request.failure()?.errorText ?? 'failed',
      });
    });
    page.on('response', (response) => {
      if (response.status() >= 500) {
        record.failed_requests.push({
          url: response.url(),
          method: response.request().method(),
          failure: `HTTP ${response.status()}`,
        });
      }
    });

    /** Signs in through the real login form; throws when the form comes back. */
    const login = async (username, password, next = '/') => {
      await page.goto(`/accounts/login/?next=${encodeURIComponent(next)}`);
      await page.fill('#id_username', username);
      await page.fill('#id_password', password);
      await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
      if (new URL(page.url()).pathname.startsWith('/accounts/login')) {
        const message = (await page.locator('.error').textContent().catch(() => null)) ?? '';
        throw new Error(`login as ${username} failed: ${message.trim() || page.url()}`);
      }
      await page.waitForLoadState('networkidle');
      mark(`logged in as ${username}`);
    };

    /** Goes to an app route ('#/projects/x/dashboard' or a path) and waits for the network. */
    const open = async (route) => {
      await page.goto(route.startsWith('#') ? `/${route}` : route);
      await page.waitForLoadState('networkidle');
      mark(`opened ${route}`);
    };

    /** A PNG in out_dir (full page unless told otherwise); returns its path. */
    const screenshot = async (name, options = {}) => {
      const file = path.join(outDir, `${name}.png`);
      await page.screenshot({ path: file, fullPage: true, animations: 'disabled', ...options });
      record.screenshots.push(file);
      return file;
    };

    try {
      record.result = (await fn({ page, context, params, login, open, screenshot, mark })) ?? null;
      record.ok = true;
    } catch (err) {
      record.error = errorText(err);
      await screenshot('failure').catch(() => {});
    }
  } catch (err) {
    record.error = errorText(err);
  } finally {
    if (context) await context.close().catch(() => {});
    fs.rmSync(profile, { recursive: true, force: true });
    mark('closed');
    writeRecord();
  }
  process.exitCode = record.ok ? 0 : 1;
}

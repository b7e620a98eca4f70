// One run of benchmarks/viewer_tti.py in a fresh Chromium profile (tests/browser/harness.mjs):
// log in (not timed), load /#/tasks/<id>/workspace afresh, read the viewer's test hook
// (window.__workspace: ready, error, timings {firstSliceMs, interactiveMs}, viewports,
// labelmapVoxels(segment?), voxelToPage(viewportId, [i, j, k]), brushLatenciesMs, setTool(name),
// setBrushSize(mm)), then drag the brush with the real mouse over the axial view's centre voxel.
// params: username, password, task_id, dims [i, j, k], brush_mm (0: the viewer's size), steps,
// drag_px, move_interval_ms, ready_timeout_ms, setup_only.
// result: {first_slice_s, tti_s, timings, viewports, brush {...}, memory {...}, page {...}}.

import fs from 'node:fs';
import { canvasStats, scenario } from '../tests/browser/harness.mjs';

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const median = (values) => {
  const v = [...values].sort((a, b) => a - b);
  const m = Math.floor(v.length / 2);
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
};

/** PSS (MB) of every Chromium process this Node process started (its descendants in /proc). */
function chromiumMemory() {
  const parent = new Map();
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
      parent.set(Number(entry), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
    } catch {
      // the process ended meanwhile
    }
  }
  const mine = new Set([process.pid]);
  for (let grew = true; grew; ) {
    grew = false;
    for (const [pid, ppid] of parent) {
      if (!mine.has(pid) && mine.has(ppid)) {
        mine.add(pid);
        grew = true;
      }
    }
  }
  mine.delete(process.pid);
  const byType = {};
  let total = 0;
  let rendererMax = 0;
  for (const pid of mine) {
    try {
      const rollup = fs.readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
      const pss = Number(/^Pss:\s+(\d+) kB/m.exec(rollup)?.[1] ?? 0) / 1024;
      const cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      const type = /--type=([\w-]+)/.exec(cmdline)?.[1] ?? 'browser';
      byType[type] = (byType[type] ?? 0) + pss;
      total += pss;
      if (type === 'renderer') rendererMax = Math.max(rendererMax, pss);
    } catch {
      // the process ended meanwhile, or is not readable
    }
  }
  return {
    processes: mine.size,
    total_pss_mb: total,
    renderer_max_pss_mb: rendererMax,
    gpu_pss_mb: byType['gpu-process'] ?? 0,
    by_type_mb: byType,
  };
}

/**
 * A Chrome performance trace (chrome://tracing / DevTools "Load profile" format) of the run, from
 * navigation to the settled brush: main thread, workers, compositor and GPU process; and a sampled
 * JavaScript CPU profile of the page's main thread (trace.cpuprofile, DevTools' format).
 */
function startTrace(cdp) {
  const categories = [
    'devtools.timeline', 'disable-by-default-devtools.timeline', 'v8.execute', 'blink.user_timing',
    'toplevel', 'gpu', 'disable-by-default-devtools.timeline.frame', 'loading', 'netlog', 'gpu.angle',
    'disabled-by-default-gpu.service', 'viz', 'gpu.service', 'disabled-by-default-gpu.decoder',
  ];
  const started = Promise.all([
    cdp.send('Tracing.start', { categories: categories.join(','), transferMode: 'ReturnAsStream' }),
    cdp.send('Profiler.enable').then(() => cdp.send('Profiler.setSamplingInterval', { interval: 500 }))
      .then(() => cdp.send('Profiler.start')),
  ]);
  return {
    async stop(file) {
      await started;
      const { profile } = await cdp.send('Profiler.stop');
      fs.writeFileSync(file.replace(/\.json$/, '.cpuprofile'), JSON.stringify(profile));
      const complete = new Promise((resolve) => cdp.once('Tracing.tracingComplete', resolve));
      await cdp.send('Tracing.end');
      const { stream } = await complete;
      const chunks = [];
      for (;;) {
        const { data, eof, base64Encoded } = await cdp.send('IO.read', { handle: stream, size: 1 << 20 });
        chunks.push(base64Encoded ? Buffer.from(data, 'base64') : Buffer.from(data));
        if (eof) break;
      }
      await cdp.send('IO.close', { handle: stream });
      fs.writeFileSync(file, Buffer.concat(chunks));
    },
  };
}

/**
 * The page's frames as the browser presents them (CDP screencast: each frame with its swap time)
 * and the brush's input events (wall-clock time, page point): an outside check of the in-page
 * brush latency, worked out by viewer_tti.py (`--screencast`). Encoding the frames costs CPU, so
 * a run with it is slower than one without.
 */
async function startScreencast(page, context) {
  await page.evaluate(() => {
    window.__brushInputs = [];
    const note = (evt) => {
      if (!evt.isTrusted || !(evt.buttons & 1)) return;
      window.__brushInputs.push({ t_ms: performance.timeOrigin + evt.timeStamp, x: evt.clientX, y: evt.clientY });
    };
    document.addEventListener('mousedown', note, true);
    document.addEventListener('mousemove', note, true);
  });
  const cdp = await context.newCDPSession(page);
  const frames = [];
  cdp.on('Page.screencastFrame', ({ data, metadata, sessionId }) => {
    frames.push({ data, metadata });
    cdp.send('Page.screencastFrameAck', { sessionId }).catch(() => undefined);
  });
  await cdp.send('Page.startScreencast', { format: 'jpeg', quality: 90 });
  for (let waited = 0; !frames.length && waited < 3000; waited += 50) await sleep(50);
  return {
    async stop(dir) {
      await cdp.send('Page.stopScreencast');
      fs.mkdirSync(dir, { recursive: true });
      const index = frames.map(({ data, metadata }, i) => {
        const file = `${String(i).padStart(4, '0')}.jpg`;
        fs.writeFileSync(`${dir}/${file}`, Buffer.from(data, 'base64'));
        return { file, ...metadata };
      });
      const inputs = await page.evaluate(() => window.__brushInputs);
      fs.writeFileSync(`${dir}/index.json`, JSON.stringify({ frames: index, inputs }));
    },
  };
}

await scenario(async ({ page, context, params, login, screenshot, mark }) => {
  // Not timed. Land on a JSON page, not the app, so the timed load is the app's first.
  await login(params.username, params.password, '/api/me/');
  const cdp = await context.newCDPSession(page);
  await cdp.send('Network.clearBrowserCache');
  // Keep every resource timing entry (the default buffer holds 250; a series has more frames).
  await page.addInitScript(() => performance.setResourceTimingBufferSize(100000));
  await page.goto('about:blank');

  const tracing = params.trace ? startTrace(cdp) : null;
  const url = `/#/tasks/${params.task_id}/workspace`;
  mark('navigation');
  const response = await page.goto(url, { waitUntil: 'commit' });
  if (!response || !response.ok()) {
    throw new Error(`GET ${url}: HTTP ${response?.status()} (${page.url()})`);
  }
  if (new URL(page.url()).pathname.startsWith('/accounts/login')) {
    throw new Error(`the workspace sent the logged-in annotator back to the login: ${page.url()}`);
  }

  if (params.setup_only) {
    await page.waitForLoadState('networkidle');
    mark('loaded');
    const seen = await page.evaluate(async (taskId) => {
      const task = await fetch(`/api/tasks/${taskId}/`).then(async (r) => ({
        status: r.status,
        body: r.ok ? await r.json() : await r.text(),
      }));
      return {
        url: location.href,
        title: document.title,
        heading: document.querySelector('h1')?.textContent ?? null,
        text: (document.body?.innerText ?? '').slice(0, 400),
        hook: typeof window.__workspace === 'object' && window.__workspace !== null,
        task_status: task.status,
        task_state: task.body?.state ?? null,
        task_assignee: task.body?.assignee ?? null,
      };
    }, params.task_id);
    await screenshot('setup', { fullPage: false });
    if (seen.task_status !== 200) throw new Error(`GET /api/tasks/${params.task_id}/: ${seen.task_status}`);
    return seen;
  }

  try {
    await page.waitForFunction(
      () => {
        const w = window.__workspace;
        return Boolean(w && (w.ready || w.error));
      },
      null,
      { timeout: params.ready_timeout_ms, polling: 200 },
    );
  } catch (err) {
    const seen = await page.evaluate(() => ({
      hook: typeof window.__workspace === 'object' && window.__workspace !== null,
      text: (document.body?.innerText ?? '').slice(0, 300),
    }));
    throw new Error(
      (seen.hook ? 'window.__workspace never became ready' : 'no window.__workspace hook') +
        ` within ${params.ready_timeout_ms} ms at ${page.url()}; the page shows: ${JSON.stringify(seen.text)}` +
        ` (${err.message.split('\n')[0]})`,
    );
  }
  mark('ready');
  const memory = chromiumMemory();
  const state = await page.evaluate(() => {
    const w = window.__workspace;
    return {
      error: w.error ? String(w.error) : null,
      timings: { ...w.timings },
      viewports: [...(w.viewports ?? [])],
    };
  });
  if (state.error) throw new Error(`the workspace reports an error: ${state.error}`);
  const { firstSliceMs, interactiveMs } = state.timings;
  for (const [name, value] of Object.entries({ firstSliceMs, interactiveMs })) {
    if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
      throw new Error(`__workspace.timings.${name} is ${JSON.stringify(value)} at ready`);
    }
  }

  // Where the page's time went (resource timing; ms since navigation start).
  const pageTimes = await page.evaluate(() => {
    const nav = performance.getEntriesByType('navigation')[0];
    const resources = performance.getEntriesByType('resource');
    const scripts = resources.filter((r) => /\.m?js(\?|$)/.test(r.name));
    const dicomweb = resources.filter((r) => r.name.includes('/dicomweb/'));
    const sum = (list, key) => list.reduce((a, r) => a + (r[key] || 0), 0);
    const phases = Object.fromEntries(
      performance.getEntriesByType('mark')
        .filter((m) => m.name.startsWith('viewer:'))
        .map((m) => [m.name.slice('viewer:'.length), Math.round(m.startTime)]),
    );
    return {
      phases_ms: phases,
      document_ms: nav?.responseEnd ?? null,
      dom_content_loaded_ms: nav?.domContentLoadedEventEnd ?? null,
      resources: resources.length,
      script_count: scripts.length,
      script_wire_bytes: sum(scripts, 'encodedBodySize'),
      script_bytes: sum(scripts, 'decodedBodySize'),
      scripts_done_ms: Math.max(0, ...scripts.map((r) => r.responseEnd)),
      dicomweb_count: dicomweb.length,
      dicomweb_bytes: sum(dicomweb, 'encodedBodySize'),
      dicomweb_first_ms: dicomweb.length ? Math.min(...dicomweb.map((r) => r.startTime)) : null,
      dicomweb_done_ms: dicomweb.length ? Math.max(...dicomweb.map((r) => r.responseEnd)) : null,
    };
  });
  await screenshot('ready', { fullPage: false });
  // Not timed: a figure for views that show nothing would be worthless.
  const views = {};
  for (const id of state.viewports) {
    views[id] = await canvasStats(page, id);
    if (!views[id] || views[id].distinct <= 32) {
      throw new Error(`view ${id} shows no image at ready: ${JSON.stringify(views[id])}`);
    }
  }

  // The brush: the real mouse over the centre voxel of the axial view.
  const viewports = state.viewports;
  const axial = viewports.find((v) => /axial/i.test(v)) ?? viewports[0];
  if (!axial) throw new Error(`__workspace.viewports is empty: ${JSON.stringify(viewports)}`);
  await page.evaluate((tool) => window.__workspace.setTool(tool), 'brush');
  if (params.brush_mm > 0) {
    await page.evaluate((mm) => window.__workspace.setBrushSize(mm), params.brush_mm);
  }
  const [ni, nj, nk] = params.dims;
  const centre = [Math.floor(ni / 2), Math.floor(nj / 2), Math.floor(nk / 2)];
  // voxelToPage gives page px; the mouse takes px in the window (the same unless scrolled).
  const toPage = async (ijk) => {
    const { p, sx, sy, w, h } = await page.evaluate(
      ([vp, v]) => ({
        p: window.__workspace.voxelToPage(vp, v),
        sx: window.scrollX, sy: window.scrollY, w: window.innerWidth, h: window.innerHeight,
      }),
      [axial, ijk],
    );
    const xy = Array.isArray(p) ? p : [p?.x, p?.y];
    if (!xy.every((c) => typeof c === 'number' && Number.isFinite(c))) {
      throw new Error(`voxelToPage(${axial}, ${JSON.stringify(ijk)}) gave ${JSON.stringify(p)}`);
    }
    const [x, y] = [xy[0] - sx, xy[1] - sy];
    if (x < 0 || y < 0 || x >= w || y >= h) {
      throw new Error(`voxel ${JSON.stringify(ijk)} of ${axial} is outside the window: ${x}, ${y}`);
    }
    return [x, y];
  };
  const [x0, y0] = await toPage(centre);
  const [xd, yd] = await toPage([Math.min(ni - 1, centre[0] + 40), centre[1], centre[2]]);
  const norm = Math.hypot(xd - x0, yd - y0) || 1; // drag along the view's i axis, drag_px long
  const [x1, y1] = [x0 + ((xd - x0) / norm) * params.drag_px, y0 + ((yd - y0) / norm) * params.drag_px];
  const under = await page.evaluate(([x, y]) => {
    const el = document.elementFromPoint(x, y);
    return el ? `${el.tagName.toLowerCase()}${el.className ? `.${String(el.className).split(' ')[0]}` : ''}` : null;
  }, [x0, y0]);
  const voxels = () =>
    page.evaluate(async () => {
      const v = await window.__workspace.labelmapVoxels();
      if (typeof v === 'number') return v;
      const values = v instanceof Map ? [...v.values()] : Object.values(v ?? {});
      return values.reduce((a, b) => a + Number(b || 0), 0);
    });
  const latencyCount = () => page.evaluate(() => window.__workspace.brushLatenciesMs.length);
  const before = await voxels();
  const n0 = await latencyCount();

  const screencast = params.screencast ? await startScreencast(page, context) : null;
  mark('brush start');
  await page.mouse.move(x0, y0);
  await page.mouse.down();
  for (let s = 1; s <= params.steps; s++) {
    const t = Date.now();
    await page.mouse.move(x0 + ((x1 - x0) * s) / params.steps, y0 + ((y1 - y0) * s) / params.steps);
    const rest = params.move_interval_ms - (Date.now() - t);
    if (rest > 0) await sleep(rest);
  }
  await page.mouse.up();
  mark('brush released');
  // Wait for the last repaints' fences: until no latency has been added for a second.
  let count = await latencyCount();
  for (let quiet = 0, waited = 0; quiet < 1000 && waited < 15000; waited += 200) {
    await sleep(200);
    const now = await latencyCount();
    quiet = now === count ? quiet + 200 : 0;
    count = now;
  }
  mark('brush settled');
  if (screencast) await screencast.stop(`${params.out_dir}/screencast`);
  if (tracing) await tracing.stop(`${params.out_dir}/trace.json`);
  const latencies = await page.evaluate((from) => window.__workspace.brushLatenciesMs.slice(from), n0);
  const after = await voxels();
  await screenshot('brushed', { fullPage: false });
  const brush = {
    viewport: axial,
    from_voxel: centre,
    from_page: [x0, y0],
    to_page: [x1, y1],
    element_under_mouse: under,
    steps: params.steps,
    voxels_before: before,
    voxels_after: after,
    latencies_ms: latencies,
    median_ms: latencies.length ? median(latencies) : null,
  };
  if (!(after > before)) {
    throw new Error(`the brush drag did not grow the labelmap: ${JSON.stringify(brush)}`);
  }
  if (!latencies.length) {
    throw new Error(`the brush drag added no brushLatenciesMs entries: ${JSON.stringify(brush)}`);
  }
  return {
    first_slice_s: firstSliceMs / 1000,
    tti_s: interactiveMs / 1000,
    timings: state.timings,
    viewports,
    views,
    brush,
    memory,
    page: pageTimes,
  };
});

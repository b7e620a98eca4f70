// The task workspace on a real imported series: waits for window.__workspace.ready, checks that
// the three views show non-uniform pixels, brushes with real mouse events (labelmap grows), erases
// (it shrinks) and keeps screenshots. Then the views' overlays (slice, window / level, slice
// range, orientation letters; where they sit, and that they take no pointer event) and the
// slice range: marked with I and O while scrolling the axial view, sent as z_range with the
// next box prompts (one inside the range, one outside it: widened), cleared with X.
// params: username, password, task_id, centre_voxel [i, j, k].
import { canvasPixel, canvasStats, scenario, stroke } from './harness.mjs';

/** Each view's overlay as the page shows it: texts, and the boxes of its parts and its cell. */
function readOverlays(page) {
  return page.evaluate(() => {
    const out = {};
    const box = (el) => {
      if (!el) return null;
      const r = el.getBoundingClientRect();
      return { x: r.left, y: r.top, right: r.right, bottom: r.bottom, width: r.width, height: r.height };
    };
    for (const id of window.__workspace.viewports) {
      const cell = document.querySelector(`.vw-${id}`);
      const overlay = cell.querySelector('.vw-overlay');
      const text = (sel) => {
        const el = overlay.querySelector(sel);
        return el && el.offsetParent !== null ? el.textContent : '';
      };
      const edges = {};
      const edgeBoxes = {};
      for (const side of ['top', 'bottom', 'left', 'right']) {
        const el = overlay.querySelector(`.vw-ov-${side}`);
        edges[side] = el.textContent;
        edgeBoxes[side] = box(el);
      }
      // the cell's own label ("Axial") and the overlay's texts
      const parts = [...cell.querySelectorAll('.vw-label, .vw-ov-slice, .vw-ov-wl, .vw-ov-mark, .vw-ov-range-text, .vw-ov-edge')]
        .filter((el) => el.offsetParent !== null && el.textContent)
        .map((el) => ({ cls: el.className, ...box(el) }));
      const centre = box(cell);
      const hit = document.elementFromPoint(centre.x + centre.width / 2, centre.y + centre.height / 2);
      out[id] = {
        hook: window.__workspace.overlay(id),
        slice: text('.vw-ov-slice'),
        windowLevel: text('.vw-ov-wl'),
        range: text('.vw-ov-range-text'),
        mark: text('.vw-ov-mark'),
        dataMark: overlay.dataset.mark,
        edges,
        edgeBoxes,
        parts,
        cell: centre,
        // a corner's text cut short (its ellipsis)
        clipped: [...overlay.querySelectorAll('.vw-ov-corner')].some((el) => el.scrollWidth > el.clientWidth + 1),
        pointerEvents: getComputedStyle(overlay).pointerEvents,
        hitInOverlay: Boolean(hit && hit.closest('.vw-overlay')),
        sliceIndex: window.__workspace.sliceIndex(id),
        lines: [...overlay.querySelectorAll('.vw-ov-line')].map((l) => ({
          end: l.dataset.end,
          y1: Number(l.getAttribute('y1')),
          y2: Number(l.getAttribute('y2')),
          x1: Number(l.getAttribute('x1')),
          x2: Number(l.getAttribute('x2')),
        })),
      };
    }
    return out;
  });
}

await scenario(async ({ page, params, login, open, screenshot, mark }) => {
  await login(params.username, params.password);
  // The key slice comes before the viewer's chunk (Cornerstone): hold that chunk back a second
  // and look at the key slice alone (the chunk loads once: the route need not be removed).
  const viewerChunk = /\/static\/assets\/viewer-[^/]*\.js$/;
  await page.route(viewerChunk, async (route) => {
    await new Promise((resolve) => setTimeout(resolve, 1000));
    await route.continue();
  });
  const started = Date.now();
  await page.goto(`/#/tasks/${params.task_id}/workspace`);
  await page.waitForFunction(() => window.__workspace?.timings.firstSliceMs != null || window.__workspace?.error);
  const keySlice = await page.evaluate(() => {
    const canvas = document.querySelector('.vw-key canvas.vw-still');
    if (!canvas) return null;
    const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    const grey = new Set();
    for (let i = 0; i < data.length; i += 4) grey.add(data[i]);
    return { distinct: grey.size, viewsShown: window.__workspace.viewports.length > 0 };
  });
  await screenshot('workspace-key-slice');
  await page.waitForFunction(() => window.__workspace?.ready || window.__workspace?.error, null, {
    timeout: params.ready_timeout_ms ?? 90000,
  });
  const error = await page.evaluate(() => window.__workspace.error);
  if (error) throw new Error(`workspace error: ${error}`);
  mark('ready');
  const readyAfterMs = Date.now() - started;
  await page.waitForTimeout(500);
  await screenshot('workspace-ready');

  const hook = await page.evaluate(() => ({
    viewports: window.__workspace.viewports,
    timings: window.__workspace.timings,
    navigationStart: performance.timeOrigin,
  }));
  const stats = {};
  for (const id of hook.viewports) stats[id] = await canvasStats(page, id);
  const overlaysAtReady = await readOverlays(page);

  // Window/level: a drag on the coronal view changes its pixels; the wheel scrolls the sagittal.
  const coronal = await page.locator('.vw-coronal .vw-element').boundingBox();
  await page.mouse.move(coronal.x + coronal.width / 2, coronal.y + coronal.height / 2);
  await page.mouse.down();
  await page.mouse.move(coronal.x + coronal.width / 2 + 80, coronal.y + coronal.height / 2 + 60, {
    steps: 5,
  });
  await page.mouse.up();
  await page.waitForTimeout(500);
  const afterWindowLevel = await canvasStats(page, 'coronal');
  const overlaysAfterWindowLevel = await readOverlays(page);
  const sagittal = await page.locator('.vw-sagittal .vw-element').boundingBox();
  await page.mouse.move(sagittal.x + sagittal.width / 2, sagittal.y + sagittal.height / 2);
  for (let i = 0; i < 8; i++) await page.mouse.wheel(0, 100);
  await page.waitForTimeout(500);
  const afterScroll = await canvasStats(page, 'sagittal');

  const loaded = await page.evaluate(() => window.__workspace.labelmapVoxels());
  const loadedSegment1 = await page.evaluate(() => window.__workspace.labelmapVoxels(1));

  // Brush a stroke through the centre voxel of the axial view (placed with voxelToPage).
  await page.evaluate(() => {
    window.__workspace.setTool('brush');
    window.__workspace.setBrushSize(6);
  });
  const axial = await page.locator('.vw-axial .vw-element').boundingBox();
  const [cx, cy] = await page.evaluate(
    (ijk) => window.__workspace.voxelToPage('axial', ijk),
    params.centre_voxel,
  );
  const d = Math.min(axial.width, axial.height) / 8;
  await stroke(page, [[cx - d, cy], [cx, cy + d / 2], [cx + d, cy]]);
  await page.waitForTimeout(300);
  const afterBrush = await page.evaluate(() => window.__workspace.labelmapVoxels());
  await screenshot('workspace-brushed');

  // A press paints at once, before the button is released (no 400 ms double-click hold).
  await page.mouse.move(cx, cy - d);
  await page.mouse.down();
  const duringPress = await page.evaluate(() => window.__workspace.labelmapVoxels());
  await page.mouse.up();
  await page.waitForTimeout(200);
  const afterClick = await page.evaluate(() => window.__workspace.labelmapVoxels());

  // Erase part of it again.
  await page.evaluate(() => window.__workspace.setTool('eraser'));
  await stroke(page, [[cx - d, cy], [cx, cy + d / 2]]);
  await page.waitForTimeout(300);
  const afterErase = await page.evaluate(() => window.__workspace.labelmapVoxels());
  await screenshot('workspace-erased');

  // While the button is held the painted view shows the stroke (drawn onto its canvas), and the
  // view's real repaint after the release shows the same colour there. In all three views (the
  // sagittal and coronal planes run across the slices).
  await page.evaluate(() => {
    window.__workspace.setTool('brush');
    window.__workspace.setBrushSize(20);
  });
  const heldStroke = async (viewportId, ijk) => {
    const [px, py] = await page.evaluate(([id, v]) => window.__workspace.voxelToPage(id, v), [viewportId, ijk]);
    const box = await page.locator(`.vw-${viewportId} .vw-element`).boundingBox();
    const reach = Math.min(box.width, box.height) / 10;
    const before = await canvasPixel(page, viewportId, [px, py]);
    const drawsBefore = await page.evaluate(() => window.__workspace.strokeOverlayDraws);
    await page.mouse.move(px - reach, py);
    await page.mouse.down();
    await page.mouse.move(px + reach, py, { steps: 6 });
    await page.waitForTimeout(400);
    const during = await canvasPixel(page, viewportId, [px, py]);
    const overlayDraws = (await page.evaluate(() => window.__workspace.strokeOverlayDraws)) - drawsBefore;
    await screenshot(`workspace-held-${viewportId}`);
    await page.mouse.up();
    await page.waitForTimeout(600);
    const after = await canvasPixel(page, viewportId, [px, py]);
    return { before, during, after, overlayDraws };
  };
  const [ci, cj, ck] = params.centre_voxel;
  const held = {
    axial: await heldStroke('axial', [ci, cj + 60, ck]),
    sagittal: await heldStroke('sagittal', [ci, cj - 60, ck]),
    coronal: await heldStroke('coronal', [ci - 60, cj, ck]), // not scrolled: as it started
  };
  // the eraser over the axial stroke: the image shows again under the held stroke
  await page.evaluate(() => window.__workspace.setTool('eraser'));
  held.axialErased = await heldStroke('axial', [ci, cj + 60, ck]);

  // The views fill the window below the toolbar, and follow it when it is resized.
  const fit = () =>
    page.evaluate(() => {
      const grid = document.querySelector('.vw-grid').getBoundingClientRect();
      const canvas = document.querySelector('.vw-axial canvas');
      return {
        windowHeight: window.innerHeight,
        gridBottom: grid.bottom + window.scrollY,
        canvas: [canvas.width, canvas.height],
        cssBox: [canvas.clientWidth, canvas.clientHeight].map((v) => Math.round(v * devicePixelRatio)),
      };
    });
  const fitBefore = await fit();
  const size = page.viewportSize();
  await page.setViewportSize({ width: 1000, height: 640 });
  await page.waitForTimeout(600);
  const fitResized = await fit();
  const resizedAxial = await canvasStats(page, 'axial');
  await screenshot('workspace-resized');
  await page.setViewportSize(size);
  await page.waitForTimeout(400);

  // Layout: one sagittal view.
  await page.selectOption('select[aria-label=Layout]', 'sagittal');
  await page.waitForTimeout(400);
  await screenshot('workspace-sagittal');
  await page.selectOption('select[aria-label=Layout]', '3x1');
  await page.waitForTimeout(600);

  // The slice range, marked while scrolling the axial view, and the requests that carry it.
  const segmentRequests = [];
  page.on('request', (request) => {
    if (request.method() === 'POST' && /\/api\/lesions\/\d+\/segment\/$/.test(request.url())) {
      segmentRequests.push(request.postDataJSON());
    }
  });
  const axialBox = await page.locator('.vw-axial .vw-element').boundingBox();
  const overAxial = () => page.mouse.move(axialBox.x + axialBox.width / 2, axialBox.y + axialBox.height / 2);
  const scrollAxial = async (ticks) => {
    await overAxial();
    for (let i = 0; i < Math.abs(ticks); i++) {
      await page.mouse.wheel(0, Math.sign(ticks) * 100);
      await page.waitForTimeout(60);
    }
    await page.waitForTimeout(300);
    return page.evaluate(() => window.__workspace.sliceIndex('axial'));
  };
  const axialOverlay = async () => (await readOverlays(page)).axial;
  const range = { start: await page.evaluate(() => window.__workspace.sliceIndex('axial')) };
  range.firstSlice = await scrollAxial(-3);
  await page.keyboard.press('i');
  await page.waitForTimeout(200);
  range.atFirst = await axialOverlay();
  range.panelPartial = await page.locator('[data-testid=slice-range]').textContent();
  range.lastSlice = await scrollAxial(5);
  await page.keyboard.press('o');
  await page.waitForTimeout(200);
  range.atLast = await readOverlays(page);
  range.marks = await page.evaluate(() => window.__workspace.sliceRange());
  range.panel = await page.locator('[data-testid=slice-range]').textContent();
  await screenshot('workspace-range-marked');
  range.insideSlice = await scrollAxial(-2);
  range.inside = await axialOverlay();
  range.outsideSlice = await scrollAxial(-6);
  range.outside = await axialOverlay();
  range.helpRows = await page.evaluate(() => {
    document.querySelector('button[title^="Keyboard shortcuts"]').click();
    const rows = [...document.querySelectorAll('dialog .shortcut-table tr')].map((tr) => tr.textContent);
    document.querySelector('dialog')?.close();
    return rows;
  });
  await page.waitForTimeout(200);

  // A box inside the range (back on a slice in it), then one outside it: the range is widened.
  const boxAt = async (k) => {
    const [ci, cj] = params.centre_voxel;
    const [x0, y0] = await page.evaluate(([v]) => window.__workspace.voxelToPage('axial', v), [[ci - 40, cj - 40, k]]);
    const [x1, y1] = await page.evaluate(([v]) => window.__workspace.voxelToPage('axial', v), [[ci + 40, cj + 40, k]]);
    await page.keyboard.press('r'); // the box tool
    await stroke(page, [[x0, y0], [(x0 + x1) / 2, (y0 + y1) / 2], [x1, y1]]);
    await page.waitForFunction(
      () => ['done', 'error'].includes(document.querySelector('.vw-segment')?.dataset.state),
      null,
      { timeout: 120000 },
    );
    await page.keyboard.press('w'); // back to window / level: the wheel scrolls the axial view again
    const state = await page.evaluate(() => ({
      state: document.querySelector('.vw-segment').dataset.state,
      text: document.querySelector('.vw-segment').textContent,
      note: document.querySelector('[data-testid=range-note]')?.textContent ?? null,
    }));
    await page.evaluate(() => { document.querySelector('.vw-segment').dataset.state = 'idle'; });
    return state;
  };
  range.boxInsideSlice = await scrollAxial(4);
  range.boxInside = await boxAt(range.boxInsideSlice);
  range.boxOutsideSlice = await scrollAxial(-8);
  range.boxOutside = await boxAt(range.boxOutsideSlice);
  await page.waitForTimeout(300);
  range.afterWiden = await readOverlays(page);
  range.marksAfterWiden = await page.evaluate(() => window.__workspace.sliceRange());
  await screenshot('workspace-range-widened');
  range.requests = segmentRequests.slice();
  await page.keyboard.press('x');
  await page.waitForTimeout(300);
  range.cleared = await axialOverlay();
  range.marksCleared = await page.evaluate(() => window.__workspace.sliceRange());
  range.panelCleared = await page.locator('[data-testid=slice-range]').textContent();

  return {
    keySlice,
    readyAfterMs,
    viewports: hook.viewports,
    timings: hook.timings,
    stats,
    afterWindowLevel,
    afterScroll,
    overlays: { ready: overlaysAtReady, afterWindowLevel: overlaysAfterWindowLevel },
    range,
    voxels: { loaded, loadedSegment1, afterBrush, duringPress, afterClick, afterErase },
    held,
    fit: { before: fitBefore, resized: fitResized, resizedAxial },
    centre: [cx, cy],
    axialBox: axial,
    brushLatenciesMs: await page.evaluate(() => window.__workspace.brushLatenciesMs.slice()),
  };
});

// The task workspace on a real imported series: waits for window.__workspace.ready, checks that
// the three views show non-uniform pixels, brushes with real mouse events (labelmap grows), erases
// (it shrinks) and keeps screenshots. params: username, password, task_id, centre_voxel [i, j, k].
import { canvasPixel, canvasStats, scenario, stroke } from './harness.mjs';

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

  return {
    keySlice,
    readyAfterMs,
    viewports: hook.viewports,
    timings: hook.timings,
    stats,
    afterWindowLevel,
    afterScroll,
    voxels: { loaded, loadedSegment1, afterBrush, duringPress, afterClick, afterErase },
    held,
    fit: { before: fitBefore, resized: fitResized, resizedAxial },
    centre: [cx, cy],
    axialBox: axial,
    brushLatenciesMs: await page.evaluate(() => window.__workspace.brushLatenciesMs.slice()),
  };
});

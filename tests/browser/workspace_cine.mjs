// An ultrasound cine (one multi-frame instance) in the workspace: one view of its frames, cine
// playback, a brush mask on the first frame, then "propagate my correction" forward through the
// frames. params: username, password, task_id, frames, centre [i, j]. Screenshots kept.
import { canvasStats, scenario } from './harness.mjs';

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

await scenario(async ({ page, params, login, screenshot }) => {
  await login(params.username, params.password);
  await page.goto(`/#/tasks/${params.task_id}/workspace`);
  await page.waitForFunction(() => window.__workspace?.ready || window.__workspace?.error, null, {
    timeout: 120000,
  });
  const error = await page.evaluate(() => window.__workspace.error);
  if (error) throw new Error(`the workspace reports: ${error}`);
  const steps = {};
  steps.viewports = await page.evaluate(() => window.__workspace.viewports);
  steps.label = await page.locator('.vw-axial .vw-label').innerText();
  steps.layoutHidden = await page.locator('select[aria-label=Layout]').isHidden();
  steps.view = await canvasStats(page, 'axial');
  steps.firstFrame = await page.evaluate(() => window.__workspace.sliceIndex('axial'));
  await screenshot('cine-ready');

  // Cine: play for a while, the frame moves on; pause, it stays.
  await page.click('button[data-action=cine]');
  const seen = new Set();
  for (let i = 0; i < 8; i++) {
    await sleep(100);
    seen.add(await page.evaluate(() => window.__workspace.sliceIndex('axial')));
  }
  steps.framesSeenPlaying = seen.size;
  await page.click('button[data-action=cine]');
  const paused = await page.evaluate(() => window.__workspace.sliceIndex('axial'));
  await sleep(500);
  steps.pausedStill = paused === (await page.evaluate(() => window.__workspace.sliceIndex('axial')));
  steps.cineButton = await page.locator('button[data-action=cine]').innerText();

  // Back to the first frame (the wheel: a frame a notch), then a brush mask there.
  const [cx, cy] = await page.evaluate(([i, j]) => window.__workspace.voxelToPage('axial', [i, j, 0]), params.centre);
  await page.mouse.move(cx, cy);
  const frame = () => page.evaluate(() => window.__workspace.sliceIndex('axial'));
  let direction = -100; // whichever way the wheel takes the view towards frame 1
  for (let i = 0, last = await frame(); i < 2 * params.frames && last > 0; i++) {
    await page.mouse.wheel(0, direction);
    await sleep(30);
    const now = await frame();
    if (now > last) direction = -direction;
    last = now;
  }
  steps.brushFrame = await page.evaluate(() => window.__workspace.sliceIndex('axial'));
  await page.click('button[data-tool=brush]');
  await page.evaluate(() => window.__workspace.setBrushSize(6));
  await page.mouse.move(cx - 25, cy);
  await page.mouse.down();
  for (let s = 1; s <= 10; s++) await page.mouse.move(cx - 25 + 5 * s, cy + (s % 2) * 4);
  await page.mouse.up();
  await page.waitForFunction(() => window.__workspace.saveState() === 'saved', null, { timeout: 30000 });
  steps.afterBrush = await page.evaluate(() => window.__workspace.lesions());
  await screenshot('cine-first-frame-mask');

  // Forward propagation through the frames from the first one.
  await page.click('button[data-action=propagate]');
  await page.waitForSelector('.vw-segment[data-state=running]', { timeout: 10000 });
  await page.waitForSelector('.vw-segment[data-state=done], .vw-segment[data-state=error]', { timeout: 120000 });
  steps.propagateState = await page.locator('.vw-segment').getAttribute('data-state');
  steps.propagateText = await page.locator('.vw-segment').innerText();
  await page.waitForFunction(() => window.__workspace.saveState() === 'saved', null, { timeout: 30000 });
  steps.afterPropagate = await page.evaluate(() => window.__workspace.lesions());
  await page.mouse.move(cx, cy);
  await page.mouse.wheel(0, 120 * 5);
  await sleep(500);
  await screenshot('cine-propagated');
  return steps;
});

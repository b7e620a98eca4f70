// The annotation loop end to end on a real imported series: the annotator claims a task from the
// queue page, adds a lesion, draws a box (a Celery worker segments it), brushes, erases, undoes,
// lets the autosave finish, reloads, submits; the reviewer rejects with a comment; the annotator
// sees the comment. Real mouse and keyboard input throughout; numbers come from window.__workspace.
// params: slug, annotator [user, pw], reviewer [user, pw], size [x, y, z], comment.
import { scenario, stroke } from './harness.mjs';

async function waitReady(page) {
  await page.waitForFunction(() => window.__workspace?.ready || window.__workspace?.error, null, {
    timeout: 120000,
  });
  const error = await page.evaluate(() => window.__workspace.error);
  if (error) throw new Error(`workspace error: ${error}`);
  await page.waitForTimeout(300);
}

const lesions = (page) => page.evaluate(() => window.__workspace.lesions());
const voxels = (page) => page.evaluate(() => window.__workspace.labelmapVoxels());

/** Waits until the labelmap count has been stable for a while (the edit diff runs in idle time). */
async function settled(page) {
  let last = await voxels(page);
  for (let i = 0; i < 20; i++) {
    await page.waitForTimeout(250);
    const now = await voxels(page);
    if (now === last) return now;
    last = now;
  }
  return last;
}

async function waitSaved(page, timeout = 30000) {
  await page.waitForFunction(() => window.__workspace.saveState() === 'saved', null, { timeout });
  return page.locator('.vw-save').getAttribute('data-state');
}

await scenario(async ({ page, context, params, login, open, screenshot, mark }) => {
  const [x, y] = params.size;
  const steps = {};

  // 1. The annotator claims the next task from the project's queue page: it opens in the
  // workspace straight away (no task page and "Open workspace" click in between).
  await login(...params.annotator);
  await open(`#/projects/${params.slug}`);
  await screenshot('01-queue');
  await page.getByRole('button', { name: /Next task/ }).click();
  await page.waitForFunction(() => /^#\/tasks\/\d+\/workspace$/.test(window.location.hash));
  const taskId = Number(/\d+/.exec(await page.evaluate(() => window.location.hash))[0]);
  await waitReady(page);
  mark('workspace ready');
  await screenshot('02-workspace');

  // 2. A lesion of the project's class.
  await page.selectOption('select[aria-label="Lesion class"]', params.lesion_class);
  await page.click('button[data-action=add-lesion]');
  await page.waitForFunction(() => window.__workspace.lesions().length === 1);
  const [lesion] = await lesions(page);
  steps.lesion = lesion;
  steps.selected = await page.evaluate(() => window.__workspace.selectedLesion());

  // 3. A box on the axial view's slice (real drag) -> the worker segments -> the mask appears.
  await page.click('button[data-tool=box]');
  const box = params.box; // [x0, y0, x1, y1] voxels
  const k = params.size[2] >> 1; // the viewer opens on the middle slice (no key slice yet)
  const toPage = (ijk) => page.evaluate((p) => window.__workspace.voxelToPage('axial', p), ijk);
  const [ax0, ay0] = await toPage([box[0], box[1], k]);
  const [ax1, ay1] = await toPage([box[2], box[3], k]);
  await page.mouse.move(ax0, ay0);
  await page.mouse.down();
  await page.mouse.move((ax0 + ax1) / 2, (ay0 + ay1) / 2, { steps: 3 });
  await page.mouse.move(ax1, ay1, { steps: 3 });
  await screenshot('03-box-drag');
  await page.mouse.up();
  await page.waitForSelector('.vw-segment[data-state=running]', { timeout: 10000 });
  const progressText = await page.locator('.vw-segment').innerText();
  await page.waitForSelector('.vw-segment[data-state=done], .vw-segment[data-state=error]', { timeout: 120000 });
  const segState = await page.locator('.vw-segment').getAttribute('data-state');
  const segText = await page.locator('.vw-segment').innerText();
  if (segState !== 'done') throw new Error(`segmentation failed: ${segText}`);
  steps.progressText = progressText;
  steps.segmentText = segText;
  steps.preseg = await settled(page);
  steps.presegLesions = await lesions(page);
  steps.afterSegSave = await waitSaved(page);
  await screenshot('04-presegmented');
  mark('pre-segmented');

  /** Runs a segmentation from the page and answers {text, voxels} once it is done. */
  const segmented = async (start) => {
    await start();
    await page.waitForSelector('.vw-segment[data-state=running]', { timeout: 10000 });
    await page.waitForSelector('.vw-segment[data-state=done], .vw-segment[data-state=error]', {
      timeout: 120000,
    });
    const text = await page.locator('.vw-segment').innerText();
    if ((await page.locator('.vw-segment').getAttribute('data-state')) !== 'done') {
      throw new Error(`segmentation failed: ${text}`);
    }
    return { text, voxels: await settled(page), saved: await waitSaved(page) };
  };

  // 3b. Point tool: Shift+click is a negative point on the selected lesion (box + point prompt).
  await page.click('button[data-tool=point]');
  const [nx, ny] = await toPage(params.negative_point);
  steps.negative = await segmented(async () => {
    await page.keyboard.down('Shift');
    await page.mouse.click(nx, ny);
    await page.keyboard.up('Shift');
  });
  await screenshot('04b-negative-point');

  // 3c. "Propagate my correction" from the axial slice.
  steps.propagated = await segmented(() => page.click('button[data-action=propagate]'));
  await screenshot('04c-propagated');

  // 3d. Hide / show the lesion (display only: the labelmap keeps its voxels).
  await page.click('li.vw-lesion button[data-action=toggle-visible]');
  steps.hidden = await lesions(page);
  await screenshot('04d-hidden');
  await page.click('li.vw-lesion button[data-action=toggle-visible]');
  steps.shown = await lesions(page);

  // 4. Brush a stroke away from the model's mask (adds voxels).
  await page.click('button[data-tool=brush]');
  await page.evaluate(() => window.__workspace.setBrushSize(4));
  const [bx, by] = await page.evaluate((p) => window.__workspace.voxelToPage('axial', p), params.brush_at);
  await stroke(page, [[bx - 20, by], [bx, by + 6], [bx + 20, by]]);
  steps.afterBrush = await settled(page);
  await screenshot('05-brushed');

  // 5. Erase part of that stroke.
  await page.click('button[data-tool=eraser]');
  await stroke(page, [[bx - 20, by], [bx - 5, by + 3]]);
  steps.afterErase = await settled(page);
  await screenshot('06-erased');

  // 6. Ctrl+Z brings the erased voxels back, Shift+Ctrl+Z erases them again; the Undo and Redo
  //    buttons do the same, and a last Ctrl+Z leaves the stroke un-erased.
  await page.keyboard.press('Control+z');
  steps.afterUndo = await settled(page);
  await page.keyboard.press('Control+Shift+Z');
  steps.afterRedo = await settled(page);
  await page.click('button[data-action=undo]');
  steps.afterUndoButton = await settled(page);
  await page.click('button[data-action=redo]');
  steps.afterRedoButton = await settled(page);
  await page.keyboard.press('Control+z');
  steps.afterUndo2 = await settled(page);
  await screenshot('07-undone');

  // 7. The autosave completes.
  steps.saveState = await waitSaved(page);
  steps.saveLabel = await page.locator('.vw-save').innerText();
  steps.final = await lesions(page);
  await screenshot('08-saved');

  // 8. A reload shows the same voxels.
  await page.reload();
  await waitReady(page);
  steps.reloaded = await lesions(page);
  steps.reloadedTotal = await voxels(page);
  await screenshot('09-reloaded');

  // 9. "?" shows the shortcut help with the workspace's own keys.
  await page.keyboard.press('?');
  await page.waitForSelector('dialog.dialog[open]');
  steps.help = await page.locator('dialog.dialog').innerText();
  await screenshot('10-shortcut-help');
  await page.keyboard.press('Escape');

  // 10. Submit.
  await page.click('button[data-action=submit]');
  await page.waitForSelector('.vw-submit-result[data-state]', { timeout: 60000 });
  steps.submitState = await page.locator('.vw-submit-result').getAttribute('data-state');
  steps.submitText = await page.locator('.vw-submit-result').innerText();
  await screenshot('11-submitted');
  mark('submitted');

  // 11. The reviewer (a fresh session: cookies cleared) opens it read-only and rejects.
  await context.clearCookies();
  await login(...params.reviewer);
  await page.goto(`/#/tasks/${taskId}/workspace`);
  await waitReady(page);
  steps.reviewerLesions = await lesions(page);
  steps.reviewerBrushDisabled = await page.locator('button[data-tool=brush]').isDisabled();
  steps.reviewerHasSubmit = (await page.locator('button[data-action=submit]').count()) > 0;
  // model vs final: the latest model mask, their difference, then the submitted one again
  await page.check('input[data-action=show-model]');
  await page.waitForSelector('.vw-model-info[data-state=model]', { timeout: 30000 });
  steps.reviewerModel = await lesions(page);
  steps.reviewerModelInfo = await page.locator('.vw-model-info').innerText();
  await screenshot('12a-review-model-masks');
  await page.check('input[data-action=show-difference]');
  await page.waitForSelector('.vw-model-info[data-state=difference]', { timeout: 30000 });
  steps.reviewerDifference = await page.evaluate(() => {
    const info = document.querySelector('.vw-model-info');
    const w = window.__workspace;
    return {
      agree: Number(info.dataset.agree), added: Number(info.dataset.added), removed: Number(info.dataset.removed),
      text: info.innerText,
      shown: { agree: w.labelmapVoxels(253), added: w.labelmapVoxels(254), removed: w.labelmapVoxels(255) },
    };
  });
  await screenshot('12b-review-difference');
  await page.check('input[data-action=show-final]');
  await page.waitForSelector('.vw-model-info[data-state=final]');
  steps.reviewerFinal = await lesions(page);
  await page.click('button[data-action=reject]'); // without a comment: refused in the page
  steps.emptyRejectText = await page.locator('.vw-review-result').innerText();
  await page.fill('textarea[aria-label="Review comment"]', params.comment);
  await screenshot('12-review');
  await page.click('button[data-action=reject]');
  await page.waitForSelector('.vw-review-result[data-state]');
  steps.reviewState = await page.locator('.vw-review-result').getAttribute('data-state');
  await screenshot('13-rejected');

  // 12. The annotator sees the task back in the queue, and opens its workspace from there (the
  // queue's link, not the task page): the comment is shown.
  await context.clearCookies();
  await login(...params.annotator);
  await open(`#/projects/${params.slug}`);
  steps.queueNote = await page.locator('.review-note').first().innerText();
  await screenshot('14-queue-after-reject');
  await page.getByRole('link', { name: `Open the workspace of task #${taskId}` }).click();
  await page.waitForFunction((id) => window.location.hash === `#/tasks/${id}/workspace`, taskId);
  await waitReady(page);
  steps.annotatorNote = await page.locator('.vw-review-note').innerText();
  steps.annotatorComment = await page.locator('.vw-review-comment').innerText();
  steps.reopenedLesions = await lesions(page);
  steps.reopenedEditable = !(await page.locator('button[data-tool=brush]').isDisabled());
  await screenshot('15-annotator-sees-comment');

  return { taskId, ...steps };
});

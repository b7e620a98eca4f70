// The manager pages in the browser, as a manager uses them.
//
// step "setup": create a project through the New project form (first sent empty: the field
// errors show), add a member on the settings page (an unknown username first: the API's 400
// shows next to the field), open round 1 on the rounds page, upload a volume on the import page
// and read the import report.
// step "preannotate": start the batch pre-annotation of the open round and watch it finish, then
// on the tasks page release the task and assign it back from the side panel, and read its audit
// trail.
// step "train": on the rounds page download the round's export (two formats), train a model on rounds 0..1 and wait for the job, make the
// new model active in the models table, and open round 2.
// params: username, password, step, name, slug, classes [names], member, volume (a file path).

import path from 'node:path';
import { scenario } from './harness.mjs';

/** A tab of the manager pages' navigation. */
function tab(page, name) {
  return page.getByRole('navigation', { name: 'Project pages' }).getByRole('link', { name, exact: true });
}

async function expectNoErrorBanner(page) {
  const error = page.locator('.page > .banner-error');
  if (await error.count() > 0) throw new Error(`the page shows an error: ${await error.innerText()}`);
}

async function setup({ page, params, open, screenshot, mark }) {
  const out = {};
  page.on('dialog', (dialog) => void dialog.accept());

  await open('#/');
  await page.getByRole('link', { name: 'New project' }).click();
  await page.getByRole('heading', { name: 'New project' }).waitFor();

  // Sent empty: the client's own checks mark the fields, nothing is posted.
  await page.getByRole('button', { name: 'Create project' }).click();
  await page.locator('.field-error:not([hidden])').first().waitFor();
  out.empty_form_errors = await page.locator('.field-error:not([hidden])').allInnerTexts();
  await screenshot('new-project-errors');

  await page.getByLabel('Name', { exact: true }).fill(params.name);
  out.slug_suggested = await page.getByLabel('Address').inputValue();
  await page.getByLabel('Address').fill(params.slug);
  await page.getByLabel('Description').fill('Created by the browser test.');
  const [first, ...more] = params.classes;
  await page.getByLabel('Class name').first().fill(first);
  for (const name of more) {
    await page.getByRole('button', { name: '+ Add class' }).click();
    await page.getByLabel('Class name').last().fill(name);
  }
  await page.getByRole('button', { name: '+ Add preset' }).click();
  await page.getByLabel('Preset name').fill('Liver');
  await page.getByLabel('Window centre').fill('60');
  await page.getByLabel('Window width').fill('160');
  await page.getByText('Low model confidence first').click();
  await screenshot('new-project-filled');
  await page.getByRole('button', { name: 'Create project' }).click();

  // The settings page of the new project, with its members.
  await page.waitForURL(`**/#/projects/${params.slug}/settings`);
  await page.getByRole('heading', { name: 'Members' }).waitFor();
  await expectNoErrorBanner(page);
  out.flash = await page.locator('.flash').innerText();
  mark('project created');

  const username = page.getByLabel('Username');
  await username.fill('nobody-by-that-name');
  await page.getByRole('button', { name: 'Add member' }).click();
  const usernameError = page.locator('#members .field-error:not([hidden])');
  await usernameError.waitFor();
  out.unknown_user_error = await usernameError.innerText();
  await username.fill(params.member);
  await page.locator('#members select').last().selectOption('annotator');
  await page.getByRole('button', { name: 'Add member' }).click();
  await page.locator('#members table').getByText(params.member, { exact: true }).waitFor();
  out.members = await page.locator('#members tbody td:first-child').allInnerTexts();
  await screenshot('settings');

  // Rounds: open round 1 (the confirm dialog is accepted).
  await tab(page, 'Rounds').click();
  await page.getByRole('button', { name: 'Open round 1' }).click();
  await page.getByText('Round 1 is open.').waitFor();
  await page.locator('table[aria-label=Rounds] tbody tr').nth(1).waitFor();
  out.rounds = await page.locator('table[aria-label=Rounds] tbody tr').allInnerTexts();
  mark('round opened');

  // Import: upload the volume, watch it, read the report.
  await tab(page, 'Import').click();
  await page.getByRole('heading', { name: 'Upload files' }).waitFor();
  await page.locator('#import-files').setInputFiles(params.volume);
  await page.getByText('image volume or video').waitFor();
  await page.getByRole('button', { name: 'Upload and import' }).click();
  await page.locator('.import-report').waitFor({ timeout: 60000 });
  out.job = await page.locator('.job').innerText();
  out.report = await page.locator('.import-report').innerText();
  out.task = Number((await page.locator('.import-report a[href^="#/tasks/"]').first().innerText()).slice(1));
  out.progress_max = await page.locator('.job [role=progressbar]').getAttribute('aria-valuenow');
  await screenshot('import-report');
  mark('volume imported');
  return out;
}

async function preannotate({ page, params, open, screenshot, mark }) {
  const out = {};
  page.on('dialog', (dialog) => void dialog.accept());

  await open(`#/projects/${params.slug}/rounds`);
  await page.getByRole('heading', { name: /Pre-annotation of round 1/ }).waitFor();
  await expectNoErrorBanner(page);
  await page.getByRole('button', { name: /Start pre-annotation|Retry failed/ }).click();
  out.started = await page.locator('#preannotation .slot .banner').innerText();
  await page.waitForFunction(
    () => /^Finished/.test(document.querySelector('#preannotation .progress-text')?.textContent ?? ''),
    null,
    { timeout: 90000 },
  );
  out.progress = await page.locator('#preannotation .progress-text').innerText();
  out.counts = await page.locator('#preannotation .counts').innerText();
  await screenshot('preannotation');
  mark('pre-annotation finished');

  // Tasks: release the task and give it back from the side panel.
  await tab(page, 'Tasks').click();
  await page.getByRole('button', { name: `Manage task #${params.task}` }).click();
  const panel = page.locator('.side-panel');
  await panel.getByRole('button', { name: 'Release to the pool' }).click();
  await panel.getByText(`Task #${params.task} is back in the pool.`).waitFor();
  await panel.getByLabel('Assign to').selectOption(params.member);
  await panel.getByRole('button', { name: 'Assign', exact: true }).click();
  await panel.getByText(`Task #${params.task} assigned to ${params.member}.`).waitFor();
  await panel.locator('.audit li').nth(1).waitFor();
  out.audit = await panel.locator('.audit li .audit-what').allInnerTexts();
  // The table refreshes after the panel's message: wait for the row to show the new state.
  const row = page.locator('table[aria-label=Tasks] tbody tr').first();
  await row.getByText('Assigned', { exact: true }).waitFor(); // exact: not "Unassigned"
  out.row = await row.innerText();
  await screenshot('task-panel', { fullPage: false });
  mark('task reassigned');
  return out;
}

async function train({ page, params, open, screenshot, mark }) {
  const out = {};
  page.on('dialog', (dialog) => void dialog.accept());

  // Rounds: download the round's export (NIfTI and DICOM SEG only).
  await open(`#/projects/${params.slug}/rounds`);
  const exportCard = page.locator('#export');
  await exportCard.getByLabel('MedSAM2 training npz').uncheck();
  await exportCard.getByLabel('nnU-Net v2 raw dataset').uncheck();
  const [download] = await Promise.all([
    page.waitForEvent('download'),
    exportCard.getByRole('link', { name: 'Download the export' }).click(),
  ]);
  out.export_zip = path.join(params.out_dir, 'export.zip');
  await download.saveAs(out.export_zip);
  mark('export downloaded');

  // Train on the accepted tasks of rounds 0..1 and watch the job on the train queue.
  await page.getByRole('button', { name: 'Train on rounds 0–1' }).click();
  await page.waitForFunction(
    () => /^(Trained|Training failed)/.test(document.querySelector('#training .progress-text')?.textContent ?? ''),
    null,
    { timeout: 120000 },
  );
  out.training = await page.locator('#training .progress-text').innerText();
  await screenshot('trained');
  mark('model trained');

  // Models: make the new model active, then open round 2: it pre-annotates with that model.
  await page.getByRole('button', { name: 'Show it in the models' }).click();
  const models = page.locator('table[aria-label="Model versions"] tbody tr');
  await models.first().waitFor();
  out.models_before = await models.allInnerTexts();
  await page.getByRole('button', { name: /^Make .* active$/ }).first().click();
  await page.getByText('is the active model').waitFor();
  await page.locator('table[aria-label="Model versions"] .badge', { hasText: 'Active' }).waitFor();
  out.models_after = await page.locator('table[aria-label="Model versions"] tbody tr').allInnerTexts();
  await page.getByRole('button', { name: 'Open round 2' }).click();
  await page.getByText('Round 2 is open.').waitFor();
  await page.locator('table[aria-label=Rounds] tbody tr').nth(2).waitFor();
  out.rounds = await page.locator('table[aria-label=Rounds] tbody tr').allInnerTexts();
  await screenshot('model-active');
  mark('round 2 opened');
  return out;
}

await scenario(async (ctx) => {
  await ctx.login(ctx.params.username, ctx.params.password);
  if (ctx.params.step === 'setup') return setup(ctx);
  if (ctx.params.step === 'preannotate') return preannotate(ctx);
  if (ctx.params.step === 'train') return train(ctx);
  throw new Error(`unknown step ${ctx.params.step}`);
});

// A DICOM series of many loose files imported on the import page, as a manager picks them.
//
// Sign in, open #/projects/<slug>/import, choose the files (params.files: paths), check the plan
// counts them, upload, and read the job row and the import report (or the error banner of a
// refused upload); a screenshot of either.
// params: username, password, slug, files (paths).

import { scenario } from './harness.mjs';

await scenario(async ({ page, params, login, open, screenshot, mark }) => {
  await login(params.username, params.password);
  await open(`#/projects/${params.slug}/import`);
  await page.getByRole('heading', { name: 'Upload files' }).waitFor();
  await page.locator('#import-files').setInputFiles(params.files);
  await page.getByText('DICOM files or archives').waitFor();
  const plan = await page.locator('.page').getByText('DICOM files or archives').innerText();
  await page.getByRole('button', { name: 'Upload and import' }).click();
  mark('upload started');
  // The report, or the banner of a refused upload (returned as `error`).
  await page.locator('.import-report, .banner-error').first().waitFor({ timeout: 150000 });
  const report = page.locator('.import-report');
  if (await report.count() === 0) {
    const banner = page.locator('.banner-error').first();
    await screenshot('import-refused');
    return { plan, error: { title: await banner.locator('strong').innerText(), message: await banner.locator('p').innerText() } };
  }
  mark('report shown');
  const out = {
    plan,
    job: await page.locator('.job').first().innerText(),
    summary: await report.locator('[role=status]').innerText(),
    chips: await report.locator('.count-chips li').allInnerTexts(),
  };
  await screenshot('import-report');
  return out;
});

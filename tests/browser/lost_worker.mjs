// A job whose worker was lost, as the manager sees it on the rounds page: sign in, open
// #/projects/<slug>/rounds, wait for the pre-annotation card to list the re-queued job, read the
// card and save a screenshot.
// params: username, password, slug.

import { scenario } from './harness.mjs';

await scenario(async ({ page, params, login, open, screenshot, mark }) => {
  await login(params.username, params.password);
  await open(`#/projects/${params.slug}/rounds`);
  await page.locator('#preannotation .requeued table').waitFor();
  mark('re-queued job shown');
  const card = page.locator('#preannotation');
  const out = {
    progress: await card.locator('.progress-text').innerText(),
    heading: await card.locator('.requeued h3').innerText(),
    rows: await card.locator('.requeued tbody tr').allInnerTexts(),
    title: await card.locator('.requeued .warning-text').first().getAttribute('title'),
  };
  await card.scrollIntoViewIfNeeded();
  await screenshot('rounds-requeued');
  return out;
});

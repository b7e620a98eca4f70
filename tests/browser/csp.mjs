// Every kind of page the product serves, under its Content-Security-Policy: the harness fails the
// test on anything the policy blocks (csp_violations). Visits the login form, the locked-out page
// (after `params.failures` wrong passwords for `params.locked_user`), the app and a task's
// workspace (the viewer, its workers and codecs), Swagger UI, ReDoc and the admin (as
// `params.admin`). Returns, per page, its policy header and what shows that it rendered.
// params: username, password, task_id, admin, admin_password, locked_user, failures.
import { scenario } from './harness.mjs';

await scenario(async ({ page, params, login, screenshot }) => {
  // ReDoc's sidebar shows Redocly's logo from their CDN (allowed by its page's policy): answer
  // it here, so that the test sends nothing off this machine.
  await page.route('https://cdn.redoc.ly/**', (route) =>
    route.fulfill({ contentType: 'image/svg+xml', body: '<svg xmlns="http://www.w3.org/2000/svg"/>' }),
  );
  const pages = {};
  const visit = async (name, url, ready) => {
    // a change of the hash alone is no navigation: load the page afresh to see its headers
    const response = (await page.goto(url)) ?? (await page.reload());
    await page.waitForLoadState('networkidle');
    const shown = await ready();
    pages[name] = {
      status: response.status(),
      policy: response.headers()['content-security-policy'] ?? null,
      shown,
    };
    await screenshot(name, { fullPage: false });
  };
  const text = (selector) => page.locator(selector).first().innerText();

  await visit('login', '/accounts/login/', () => text('h1'));
  for (let i = 0; i < params.failures; i++) {
    await page.goto('/accounts/login/');
    await page.fill('#id_username', params.locked_user);
    await page.fill('#id_password', `wrong-${i}`);
    await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
  }
  pages.locked_out = { shown: await text('h1'), url: new URL(page.url()).pathname };
  await screenshot('locked-out');

  await login(params.username, params.password);
  await visit('app', '/', async () => {
    await page.waitForSelector('#app h1, #app h2');
    return text('#app h1, #app h2');
  });
  await visit('workspace', `/#/tasks/${params.task_id}/workspace`, async () => {
    await page.waitForFunction(() => window.__workspace?.ready || window.__workspace?.error, null, {
      timeout: 90000,
    });
    return page.evaluate(() => window.__workspace.error ?? window.__workspace.viewports);
  });
  await visit('docs', '/api/docs/', async () => {
    await page.waitForSelector('.swagger-ui .opblock');
    return page.locator('.swagger-ui .opblock').count();
  });
  await visit('redoc', '/api/redoc/', async () => {
    await page.waitForSelector('.api-content h2');
    return page.locator('.api-content h2').count();
  });

  await page.goto('/admin/login/');
  await page.fill('#id_username', params.admin);
  await page.fill('#id_password', params.admin_password);
  await Promise.all([page.waitForNavigation(), page.click('input[type=submit]')]);
  await visit('admin', '/admin/', () => text('#site-name'));
  await visit('admin_users', '/admin/auth/user/', () => page.locator('#result_list tbody tr').count());
  await visit('admin_user', '/admin/auth/user/1/change/', () => text('h2'));
  await visit('admin_lockouts', '/admin/axes/accessattempt/', () => text('h1'));
  return pages;
});

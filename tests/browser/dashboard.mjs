// The manager's dashboard in the browser: sign in, open #/projects/<slug>/dashboard, wait for the
// charts, read back what the SVG drew (every bar and marker with its value, category, series and
// geometry) and the tables, save a full-page screenshot.
// params: username, password, slug, charts (how many charts to wait for, default 5).

import { scenario } from './harness.mjs';

await scenario(async ({ page, params, login, open, screenshot, mark }) => {
  await login(params.username, params.password);
  await open(`#/projects/${params.slug}/dashboard`);
  const expected = params.charts ?? 5;
  await page.waitForFunction(
    (n) => document.querySelectorAll('.chart-grid-layout svg.chart').length >= n ||
      document.querySelector('.page .banner-error') !== null,
    expected,
  );
  const error = page.locator('.page .banner-error');
  if (await error.count() > 0) throw new Error(`the dashboard shows an error: ${await error.innerText()}`);
  mark('charts drawn');

  const read = await page.evaluate(() => {
    const num = (el, name) => Number(el.getAttribute(name));
    const box = (el) => {
      const r = el.getBoundingClientRect();
      return { width: r.width, height: r.height };
    };
    const charts = [...document.querySelectorAll('.chart-grid-layout .chart-card')].map((card) => {
      const svg = card.querySelector('svg.chart');
      return {
        heading: card.querySelector('h2')?.textContent ?? '',
        empty: svg === null ? (card.textContent ?? '') : null,
        kind: svg?.getAttribute('data-chart') ?? null,
        title: svg?.getAttribute('aria-label') ?? null,
        points: svg ? num(svg, 'data-points') : 0,
        series: svg ? num(svg, 'data-series') : 0,
        size: svg ? box(svg) : null,
        axis_labels: svg ? [...svg.querySelectorAll('.chart-grid text')].map((t) => t.textContent) : [],
        legend: svg ? [...svg.querySelectorAll('.chart-legend text')].map((t) => t.textContent) : [],
        bars: svg
          ? [...svg.querySelectorAll('.chart-bars rect')].map((r) => ({
              value: num(r, 'data-value'),
              category: r.getAttribute('data-category'),
              series: r.getAttribute('data-series-name'),
              y: num(r, 'y'),
              height: num(r, 'height'),
              tooltip: r.querySelector('title')?.textContent ?? '',
              drawn: box(r),
            }))
          : [],
        lines: svg
          ? [...svg.querySelectorAll('.chart-line')].map((g) => ({
              series: g.getAttribute('data-series-name'),
              path: g.querySelector('path')?.getAttribute('d') ?? '',
              markers: [...g.querySelectorAll('circle')].map((c) => ({
                value: num(c, 'data-value'),
                category: c.getAttribute('data-category'),
                series: c.getAttribute('data-series-name'),
                cy: num(c, 'cy'),
                tooltip: c.querySelector('title')?.textContent ?? '',
                drawn: box(c),
              })),
            }))
          : [],
      };
    });
    const tables = {};
    for (const card of document.querySelectorAll('.page section.card')) {
      const table = card.querySelector('table');
      if (!table || card.classList.contains('chart-card')) continue;
      const heading = card.querySelector('h2')?.textContent ?? '';
      tables[heading] = {
        headers: [...table.querySelectorAll('thead th')].map((th) => th.textContent?.trim() ?? ''),
        rows: [...table.querySelectorAll('tbody tr')].map((tr) =>
          [...tr.querySelectorAll('td, th')].map((td) => td.textContent?.trim() ?? '')),
      };
    }
    return {
      url: location.href,
      heading: document.querySelector('.page h1')?.textContent ?? '',
      summary: document.querySelector('.page .page-head p')?.textContent ?? '',
      document_title: document.title,
      charts,
      tables,
    };
  });
  await screenshot('dashboard');
  return read;
});

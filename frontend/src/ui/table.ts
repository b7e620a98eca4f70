// Data table with an optional "Show more" button that follows DRF `next` links.

import { getPage, type Paginated } from '../api';
import { h, type Child } from './dom';
import { errorBanner, isAbort } from './feedback';

export interface Column<T> {
  header: string;
  cell: (row: T) => Child | Child[];
  className?: string;
}

export interface TableOptions<T> {
  columns: Column<T>[];
  /** Extra full-width row under a row (e.g. the reviewer's comment), or null. */
  detail?: (row: T) => Child | null;
  signal?: AbortSignal;
  label?: string;
}

function bodyRows<T>(rows: T[], opts: TableOptions<T>): HTMLTableRowElement[] {
  const out: HTMLTableRowElement[] = [];
  for (const row of rows) {
    const extra = opts.detail?.(row) ?? null;
    out.push(h('tr', { class: extra ? 'has-detail' : null },
      opts.columns.map((c) => h('td', { class: c.className }, c.cell(row)))));
    if (extra) {
      out.push(h('tr', { class: 'detail-row' },
        h('td', { colspan: opts.columns.length }, extra)));
    }
  }
  return out;
}

export function dataTable<T>(page: Paginated<T> | T[], opts: TableOptions<T>): HTMLElement {
  const first = Array.isArray(page) ? page : page.results;
  const tbody = h('tbody', null, bodyRows(first, opts));
  const table = h('table', { class: 'data', 'aria-label': opts.label },
    h('thead', null, h('tr', null, opts.columns.map((c) => h('th', { class: c.className }, c.header)))),
    tbody,
  );
  const wrap = h('div', { class: 'table-wrap' }, table);
  if (Array.isArray(page)) return wrap;

  let next = page.next;
  let shown = first.length;
  const status = h('span', { class: 'muted' });
  const slot = h('div');
  const more = h('button', { type: 'button', class: 'btn' }, 'Show more');
  const footer = h('div', { class: 'table-footer' }, status, more);

  const refresh = (): void => {
    status.textContent = `Showing ${shown} of ${page.count}`;
    more.hidden = next === null;
  };
  more.addEventListener('click', async () => {
    if (!next) return;
    more.disabled = true;
    slot.replaceChildren();
    try {
      const data = await getPage<T>(next, { signal: opts.signal });
      tbody.append(...bodyRows(data.results, opts));
      shown += data.results.length;
      next = data.next;
      refresh();
    } catch (err) {
      if (!isAbort(err)) slot.replaceChildren(errorBanner(err, 'Could not load more'));
    } finally {
      more.disabled = false;
    }
  });
  refresh();
  if (page.next === null && page.count <= first.length) return wrap;
  wrap.append(footer, slot);
  return wrap;
}

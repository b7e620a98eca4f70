// #/projects/<slug>/dashboard  The manager's dashboard: throughput, effort, model quality, cost.

import {
  effortCsvUrl,
  getDashboard,
  getProject,
  type AnnotatorEffort,
  type Dashboard,
  type QueueDepth,
  type RoundEffort,
  type TaskState,
} from '../api';
import { href } from '../router';
import { barChart, lineChart } from '../ui/charts';
import { h } from '../ui/dom';
import { emptyState, notice } from '../ui/feedback';
import { formatNumber } from '../ui/format';
import { breadcrumbs, setTitle } from '../ui/layout';
import { managerTabs } from '../ui/managerNav';
import { dailyTotals, perAnnotator } from '../ui/plots';
import { dataTable, type Column } from '../ui/table';
import type { PageContext } from './page';

const STATES: TaskState[] = ['unassigned', 'assigned', 'submitted', 'accepted', 'rejected'];

export function formatSeconds(seconds: number | null): string {
  if (seconds === null) return '—';
  if (seconds < 60) return `${Math.round(seconds)} s`;
  const minutes = Math.floor(seconds / 60);
  const rest = Math.round(seconds % 60);
  return rest === 0 ? `${minutes} min` : `${minutes} min ${rest} s`;
}

export function formatPercent(value: number | null): string {
  return value === null ? '—' : `${Math.round(value * 100)}%`;
}

/** The last part of a dotted backend path (the full name is in the tooltip). */
function modelLabel(name: string | null): HTMLElement | string {
  if (!name) return '—';
  return h('span', { title: name }, name.split('.').at(-1) ?? name);
}

function fixed(value: number | null, digits = 3): string {
  return value === null ? '—' : value.toFixed(digits);
}

/** The sentence under the title that says what the cost reduction is measured against. */
export function costSummary(data: Dashboard): string {
  if (data.cost_basis === 'manual_round') {
    return `Cost reduction against the manual round ${data.baseline_round ?? '?'} ` +
      `(median ${formatSeconds(data.baseline_cost_s)} of active time per lesion).`;
  }
  if (data.cost_basis === 'slice_estimate') {
    return 'No manual round yet: the cost reduction is estimated from the slices annotators ' +
      're-contoured (2D Dice of model against final mask under 0.9) out of all slices of the final masks.';
  }
  return 'No finished lesions yet: the cost reduction appears once tasks are submitted.';
}

function chartCard(title: string, note: string, chart: SVGSVGElement | HTMLElement): HTMLElement {
  return h('section', { class: 'card chart-card' },
    h('h2', null, title),
    h('p', { class: 'muted small' }, note),
    chart,
  );
}

function charts(data: Dashboard): HTMLElement {
  const rounds = data.rounds.filter((r) => r.lesions > 0);
  const roundLabels = rounds.map((r) => `R${r.round}`);
  const daily = dailyTotals(data.throughput);
  const byAnnotator = perAnnotator(data.throughput, 'submitted');
  const none = (what: string): HTMLElement => emptyState(`No ${what} yet.`);

  return h('div', { class: 'chart-grid-layout' },
    chartCard('Throughput per day', 'Tasks submitted and accepted per day, all annotators.',
      daily.days.length === 0 ? none('submitted tasks') : barChart({
        title: 'Tasks submitted and accepted per day',
        categories: daily.days.map((d) => d.slice(5)),
        series: [
          { name: 'Submitted', values: daily.submitted },
          { name: 'Accepted', values: daily.accepted },
        ],
        format: (v) => formatNumber(v),
        yLabel: 'tasks',
      })),
    chartCard('Submitted per annotator', 'Tasks each annotator submitted per day (last submission).',
      byAnnotator.days.length === 0 ? none('submitted tasks') : barChart({
        title: 'Tasks submitted per day per annotator',
        categories: byAnnotator.days.map((d) => d.slice(5)),
        series: byAnnotator.series,
        format: (v) => formatNumber(v),
        yLabel: 'tasks',
      })),
    chartCard('Active time per lesion', 'Median active seconds per lesion in each round (idle time cut).',
      rounds.length === 0 ? none('finished lesions') : barChart({
        title: 'Median active time per lesion per round',
        categories: roundLabels,
        series: [{ name: 'Median active time', values: rounds.map((r) => r.median_active_s) }],
        format: (v) => formatSeconds(v),
        tickFormat: (v) => String(v),
        yLabel: 'seconds',
      })),
    chartCard('Model versus final mask', 'Dice of the first model mask against the final mask, per round.',
      rounds.every((r) => r.model_dice_median === null) ? none('model-annotated lesions') : lineChart({
        title: 'Model versus final Dice per round',
        categories: roundLabels,
        series: [
          { name: 'Median Dice', values: rounds.map((r) => r.model_dice_median) },
          { name: 'Mean Dice', values: rounds.map((r) => r.model_dice_mean) },
        ],
        domain: [0, 1],
        format: (v) => v.toFixed(2),
        yLabel: 'Dice',
      })),
    chartCard('Cost reduction', data.cost_basis === 'slice_estimate'
      ? 'Share of the slices of the final masks that did not need re-contouring.'
      : 'Share of the baseline active time per lesion saved in each round.',
      rounds.every((r) => r.cost_reduction === null) ? none('cost estimate') : barChart({
        title: 'Cost reduction per round',
        categories: roundLabels,
        series: [{ name: 'Cost reduction', values: rounds.map((r) => r.cost_reduction) }],
        format: formatPercent,
        yLabel: 'saved',
      })),
  );
}

const roundColumns: Column<RoundEffort>[] = [
  { header: 'Round', cell: (r) => r.round, className: 'num' },
  { header: 'Model', cell: (r) => (r.manual ? 'manual' : modelLabel(r.model_version)) },
  { header: 'Tasks', cell: (r) => r.tasks, className: 'num' },
  { header: 'Lesions', cell: (r) => r.lesions, className: 'num' },
  { header: 'Median active / lesion', cell: (r) => formatSeconds(r.median_active_s), className: 'num' },
  { header: 'Dice (median)', cell: (r) => fixed(r.model_dice_median), className: 'num' },
  { header: 'HD95 (median)', cell: (r) => (r.model_hd95_median_mm === null ? '—' : `${r.model_hd95_median_mm.toFixed(1)} mm`), className: 'num' },
  { header: 'Edited', cell: (r) => formatPercent(r.edited_fraction_mean), className: 'num' },
  { header: 'Accepted as is', cell: (r) => formatPercent(r.accepted_without_edits), className: 'num' },
  { header: 'Slices fixed', cell: (r) => (r.slices ? `${r.slices_fixed} / ${r.slices}` : '—'), className: 'num' },
  { header: 'Cost reduction', cell: (r) => formatPercent(r.cost_reduction), className: 'num' },
];

const queueColumns: Column<QueueDepth>[] = [
  { header: 'Round', cell: (q) => q.round, className: 'num' },
  ...STATES.map((state): Column<QueueDepth> => ({
    header: state[0]?.toUpperCase() + state.slice(1),
    cell: (q) => q[state] ?? 0,
    className: 'num',
  })),
  { header: 'Total', cell: (q) => q.total, className: 'num strong' },
];

const annotatorColumns: Column<AnnotatorEffort>[] = [
  { header: 'Annotator', cell: (a) => a.annotator || '—' },
  { header: 'Finished tasks', cell: (a) => a.tasks, className: 'num' },
  { header: 'Lesions', cell: (a) => a.lesions, className: 'num' },
  { header: 'Active time', cell: (a) => formatSeconds(a.active_s), className: 'num' },
  { header: 'Median / lesion', cell: (a) => formatSeconds(a.median_active_s), className: 'num' },
];

export async function dashboardPage(root: HTMLElement, ctx: PageContext, slug: string): Promise<void> {
  const opts = { signal: ctx.signal };
  const [project, data] = await Promise.all([getProject(slug, opts), getDashboard(slug, opts)]);
  setTitle('Dashboard', project.name);

  root.replaceChildren(
    breadcrumbs([
      { label: 'Projects', href: href.projects() },
      { label: project.name, href: href.project(slug) },
      { label: 'Dashboard' },
    ]),
    h('div', { class: 'page-head page-head-row' },
      h('div', null,
        h('h1', null, `${project.name}: dashboard`),
        h('p', { class: 'muted' }, costSummary(data)),
      ),
      h('a', { class: 'btn', href: effortCsvUrl(slug), download: `${slug}-effort.csv` },
        'Download effort CSV'),
    ),
    managerTabs(project, 'dashboard'),
    ...(data.rounds.some((r) => r.lesions > 0)
      ? []
      : [notice('No submitted or accepted tasks yet: the effort plots fill in as work is finished.')]),
    charts(data),
    h('section', { class: 'card' },
      h('h2', null, 'Rounds'),
      dataTable<RoundEffort>(data.rounds, { label: 'Effort per round', columns: roundColumns }),
      h('p', { class: 'muted small' }, data.cost_definition),
    ),
    h('section', { class: 'card' },
      h('h2', null, 'Queue depth'),
      dataTable<QueueDepth>(data.queue, { label: 'Tasks by state per round', columns: queueColumns }),
    ),
    h('section', { class: 'card' },
      h('h2', null, 'Annotators'),
      data.annotators.length === 0
        ? emptyState('No finished tasks yet.')
        : dataTable<AnnotatorEffort>(data.annotators, { label: 'Effort per annotator', columns: annotatorColumns }),
    ),
  );
}

import { describe, expect, it } from 'vitest';
import type { Dashboard } from '../api';
import { costSummary, formatPercent, formatSeconds } from './dashboard';

const base: Dashboard = {
  project: 'p',
  cost_basis: null,
  baseline_round: null,
  baseline_cost_s: null,
  cost_definition: '',
  rounds: [],
  queue: [],
  throughput: [],
  annotators: [],
};

describe('dashboard text', () => {
  it('formats seconds and shares', () => {
    expect(formatSeconds(null)).toBe('—');
    expect(formatSeconds(42.4)).toBe('42 s');
    expect(formatSeconds(150)).toBe('2 min 30 s');
    expect(formatSeconds(120)).toBe('2 min');
    expect(formatPercent(0.8333)).toBe('83%');
    expect(formatPercent(null)).toBe('—');
  });

  it('says what the cost reduction is measured against', () => {
    expect(costSummary({ ...base, cost_basis: 'manual_round', baseline_round: 0, baseline_cost_s: 150 }))
      .toBe('Cost reduction against the manual round 0 (median 2 min 30 s of active time per lesion).');
    expect(costSummary({ ...base, cost_basis: 'slice_estimate' })).toMatch(/re-contoured/);
    expect(costSummary(base)).toMatch(/No finished lesions/);
  });
});

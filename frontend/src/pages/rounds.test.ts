import { describe, expect, it } from 'vitest';
import type { PreannotationProgress } from '../api';
import { preannotationStatus, startMessage } from './rounds';

const none: PreannotationProgress = { total: 0, queued: 0, running: 0, succeeded: 0, failed: 0, failures: [], notices: [] };

describe('pre-annotation progress', () => {
  it('is finished and empty before any job', () => {
    expect(preannotationStatus(none)).toMatchObject({ fraction: null, finished: true, done: 0 });
    expect(preannotationStatus(none).text).toMatch(/Not started/);
  });

  it('counts succeeded and failed jobs as done while others run', () => {
    const s = preannotationStatus({ ...none, total: 8, queued: 3, running: 1, succeeded: 3, failed: 1 });
    expect(s).toMatchObject({ done: 4, active: 4, fraction: 0.5, finished: false });
    expect(s.text).toBe('4 of 8 lesions done · 1 running, 3 queued');
  });

  it('says how many jobs were re-queued after losing their worker', () => {
    const notice = { job: 7, lesion: 3, task: 2, state: 'queued' as const, notice: 'worker lost: x; re-queued (attempt 2 of 3)' };
    const s = preannotationStatus({ ...none, total: 2, queued: 1, succeeded: 1, notices: [notice] });
    expect(s.text).toBe('1 of 2 lesions done · 0 running, 1 queued · 1 re-queued after a lost worker');
  });

  it('says when it finished with failures', () => {
    const s = preannotationStatus({ ...none, total: 3, succeeded: 2, failed: 1 });
    expect(s).toMatchObject({ fraction: 1, finished: true });
    expect(s.text).toBe('Finished with failures: 2 succeeded, 1 failed');
    expect(preannotationStatus({ ...none, total: 1, succeeded: 1 }).text).toBe('Finished: all 1 lesion pre-annotated');
  });

  it('explains what a start did', () => {
    expect(startMessage({ ...none, total: 2, queued: 2, started: 2 })).toBe('2 jobs queued on the GPU batch queue.');
    expect(startMessage({ ...none, total: 2, running: 2, started: 0 })).toMatch(/still running/);
    expect(startMessage({ ...none, started: 0 })).toMatch(/key slice and a box/);
  });
});

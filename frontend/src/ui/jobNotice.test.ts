import { describe, expect, it } from 'vitest';
import { attemptSuffix, noticeLine } from './jobNotice';

describe('job notices', () => {
  it('shortens a lost worker to what it means for the job', () => {
    const notice = 'worker lost: gpu0 (process 4242) stopped during attempt 1 of 3 (last heartbeat 10:00:00 UTC); '
      + 're-queued (attempt 2 of 3)';
    expect(noticeLine(notice)).toBe('Worker lost; re-queued (attempt 2 of 3)');
  });

  it('shows any other notice as it is, and nothing without one', () => {
    expect(noticeLine('paused by an operator')).toBe('Paused by an operator');
    expect(noticeLine('  ')).toBe('');
  });

  it('names the attempt only after the first', () => {
    expect(attemptSuffix(1)).toBe('');
    expect(attemptSuffix(2)).toBe(' (attempt 2 of 3)');
  });
});

import { describe, expect, it, vi } from 'vitest';
import type { Task } from '../api';
import { openNextTask } from './project';

describe('Next task', () => {
  it('claims the next task and opens its workspace, not the task page', async () => {
    const claim = vi.fn(async () => ({ id: 12, state: 'assigned' }) as Task);
    const go = vi.fn();
    await expect(openNextTask('lung', {}, claim, go)).resolves.toBe(true);
    expect(claim).toHaveBeenCalledWith('lung', {});
    expect(go).toHaveBeenCalledWith('#/tasks/12/workspace');
  });

  it('stays on the queue when nothing is waiting', async () => {
    const go = vi.fn();
    await expect(openNextTask('lung', {}, async () => null, go)).resolves.toBe(false);
    expect(go).not.toHaveBeenCalled();
  });
});

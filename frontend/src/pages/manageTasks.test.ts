import { describe, expect, it } from 'vitest';
import { auditText, filterFromQuery, taskActions } from './manageTasks';

describe('task list filter', () => {
  it('reads known states and round numbers only', () => {
    expect(filterFromQuery(new URLSearchParams('state=assigned&round=2'))).toEqual({ state: 'assigned', round: 2 });
    expect(filterFromQuery(new URLSearchParams('state=bogus&round=x'))).toEqual({});
    expect(filterFromQuery(new URLSearchParams('round=0'))).toEqual({ round: 0 });
  });
});

describe('task actions', () => {
  it.each([
    ['unassigned', { assign: true, release: false, reopen: false }],
    ['assigned', { assign: true, release: true, reopen: false }],
    ['submitted', { assign: false, release: false, reopen: false }],
    ['accepted', { assign: false, release: false, reopen: true }],
    ['rejected', { assign: false, release: false, reopen: false }],
  ] as const)('%s', (state, actions) => {
    expect(taskActions({ state })).toEqual(actions);
  });
});

describe('audit text', () => {
  it('describes the events managers look for', () => {
    expect(auditText({ action: 'task.assigned', data: { user: 3, username: 'bob', previous: null } })).toBe('Assigned to bob');
    expect(auditText({ action: 'task.reopened', data: { reason: 'wrong class' } })).toBe('Reopened: wrong class');
    expect(auditText({ action: 'task.released', data: { reason: 'manager' } })).toBe('Released to the pool (by a manager)');
    expect(auditText({ action: 'task.released', data: { reason: 'stale' } })).toBe('Released to the pool (stale)');
    expect(auditText({ action: 'mask.saved', data: {} })).toBe('Mask saved');
    expect(auditText({ action: 'custom.thing', data: {} })).toBe('custom.thing');
  });
});

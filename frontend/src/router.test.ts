import { describe, expect, it } from 'vitest';
import { hashQuery, href, parseRoute } from './router';

describe('parseRoute', () => {
  it.each(['', '#', '#/', '#//', '/', '#/projects', '#/projects/'])('%j is the project list', (hash) => {
    expect(parseRoute(hash)).toEqual({ name: 'projects' });
  });

  it('parses a project slug', () => {
    expect(parseRoute('#/projects/liver-ct')).toEqual({ name: 'project', slug: 'liver-ct' });
    expect(parseRoute('#/projects/liver-ct/')).toEqual({ name: 'project', slug: 'liver-ct' });
  });

  it('decodes an encoded slug', () => {
    expect(parseRoute('#/projects/a%20b')).toEqual({ name: 'project', slug: 'a b' });
  });

  it('parses a project dashboard', () => {
    expect(parseRoute('#/projects/liver-ct/dashboard')).toEqual({ name: 'dashboard', slug: 'liver-ct' });
    expect(parseRoute('#/projects/liver-ct/dashboard/')).toEqual({ name: 'dashboard', slug: 'liver-ct' });
  });

  it('parses a task id', () => {
    expect(parseRoute('#/tasks/42')).toEqual({ name: 'task', id: 42 });
    expect(parseRoute('#/tasks/42/')).toEqual({ name: 'task', id: 42 });
  });

  it('parses the task workspace', () => {
    expect(parseRoute('#/tasks/42/workspace')).toEqual({ name: 'workspace', id: 42 });
    expect(parseRoute(href.workspace(9))).toEqual({ name: 'workspace', id: 9 });
    expect(parseRoute('#/tasks/0/workspace')).toEqual({ name: 'notFound', path: '/tasks/0/workspace' });
    expect(parseRoute('#/tasks/4/viewer')).toEqual({ name: 'notFound', path: '/tasks/4/viewer' });
  });

  it('ignores a query string', () => {
    expect(parseRoute('#/tasks/7?tab=lesions')).toEqual({ name: 'task', id: 7 });
  });

  it.each([
    ['#/tasks/abc', '/tasks/abc'],
    ['#/tasks/0', '/tasks/0'],
    ['#/tasks/-1', '/tasks/-1'],
    ['#/tasks/1.5', '/tasks/1.5'],
    ['#/tasks', '/tasks'],
    ['#/projects/a/b', '/projects/a/b'],
    ['#/projects/a/dashboard/x', '/projects/a/dashboard/x'],
    ['#/projects/%E0%A4%A', '/projects/%E0%A4%A'],
    ['#/nowhere', '/nowhere'],
  ])('%j is not found', (hash, path) => {
    expect(parseRoute(hash)).toEqual({ name: 'notFound', path });
  });

  it('round-trips with href', () => {
    expect(parseRoute(href.projects())).toEqual({ name: 'projects' });
    expect(parseRoute(href.project('ct/mr #1'))).toEqual({ name: 'project', slug: 'ct/mr #1' });
    expect(parseRoute(href.task(9))).toEqual({ name: 'task', id: 9 });
    expect(parseRoute(href.dashboard('ct/mr #1'))).toEqual({ name: 'dashboard', slug: 'ct/mr #1' });
  });

  it.each(['settings', 'import', 'rounds', 'tasks'] as const)('parses the manager page %s', (page) => {
    expect(parseRoute(`#/projects/liver-ct/${page}`)).toEqual({ name: page, slug: 'liver-ct' });
    expect(parseRoute(href[page]('ct/mr #1'))).toEqual({ name: page, slug: 'ct/mr #1' });
  });

  it('parses the new project page, not a project called new-project', () => {
    expect(parseRoute(href.newProject())).toEqual({ name: 'newProject' });
    expect(parseRoute('#/projects/new-project')).toEqual({ name: 'project', slug: 'new-project' });
  });
});

describe('task list filters in the hash', () => {
  it('builds and reads the query', () => {
    const link = href.tasks('lung', { state: 'assigned', round: 2 });
    expect(link).toBe('#/projects/lung/tasks?state=assigned&round=2');
    expect(parseRoute(link)).toEqual({ name: 'tasks', slug: 'lung' });
    expect(hashQuery(link).get('state')).toBe('assigned');
    expect(hashQuery(link).get('round')).toBe('2');
    expect(hashQuery('#/projects/lung/tasks').get('state')).toBeNull();
  });
});

// One typed function per API endpoint the front end uses.

import { request, sameOriginPath } from './client';
import type {
  Dashboard,
  Lesion,
  Me,
  Paginated,
  Project,
  ReviewDecision,
  Task,
  TaskState,
} from './types';

type Opts = { signal?: AbortSignal };

const seg = encodeURIComponent;

export function getMe(opts: Opts = {}): Promise<Me> {
  return request<Me>('GET', '/api/me/', opts);
}

export function listProjects(opts: Opts = {}): Promise<Paginated<Project>> {
  return request<Paginated<Project>>('GET', '/api/projects/', opts);
}

export function getProject(slug: string, opts: Opts = {}): Promise<Project> {
  return request<Project>('GET', `/api/projects/${seg(slug)}/`, opts);
}

export interface TaskFilter {
  mine?: boolean;
  state?: TaskState;
}

export function listTasks(
  slug: string,
  filter: TaskFilter = {},
  opts: Opts = {},
): Promise<Paginated<Task>> {
  const query = new URLSearchParams();
  if (filter.mine) query.set('mine', '1');
  if (filter.state) query.set('state', filter.state);
  const qs = query.toString();
  return request<Paginated<Task>>(
    'GET',
    `/api/projects/${seg(slug)}/tasks/${qs ? `?${qs}` : ''}`,
    opts,
  );
}

/** Follows a DRF pagination link (`next` / `previous`). */
export function getPage<T>(link: string, opts: Opts = {}): Promise<Paginated<T>> {
  return request<Paginated<T>>('GET', sameOriginPath(link), opts);
}

/** Claims the next task of the queue; `null` when the queue is empty (204). */
export function nextTask(slug: string, opts: Opts = {}): Promise<Task | null> {
  return request<Task | null>('POST', `/api/projects/${seg(slug)}/tasks/next/`, opts);
}

export function getTask(id: number, opts: Opts = {}): Promise<Task> {
  return request<Task>('GET', `/api/tasks/${id}/`, opts);
}

export function listLesions(taskId: number, opts: Opts = {}): Promise<Lesion[]> {
  return request<Lesion[]>('GET', `/api/tasks/${taskId}/lesions/`, opts);
}

/** Submits the task for review. The API may answer with the updated task or 204. */
export function submitTask(id: number, opts: Opts = {}): Promise<Task | null> {
  return request<Task | null>('POST', `/api/tasks/${id}/submit/`, opts);
}

export function reviewTask(
  id: number,
  decision: ReviewDecision,
  comment: string,
  opts: Opts = {},
): Promise<Task | null> {
  return request<Task | null>('POST', `/api/tasks/${id}/review/`, {
    ...opts,
    body: { decision, comment },
  });
}

/** The manager's dashboard of a project (managers only). */
export function getDashboard(slug: string, opts: Opts = {}): Promise<Dashboard> {
  return request<Dashboard>('GET', `/api/projects/${seg(slug)}/dashboard/`, opts);
}

/** Where the per-lesion effort table downloads from (a plain link: the browser saves it). */
export function effortCsvUrl(slug: string): string {
  return `/api/projects/${seg(slug)}/effort.csv`;
}

// One typed function per API endpoint the front end uses.

import { ApiError, request, sameOriginPath } from './client';
import type {
  AuditEvent,
  Dashboard,
  ImportReport,
  Lesion,
  Me,
  Membership,
  ModelVersion,
  PacsFilter,
  PacsStudy,
  Paginated,
  PreannotationProgress,
  Project,
  ProjectCreate,
  ProjectUpdate,
  ReviewDecision,
  Role,
  Round,
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
  round?: number;
}

export function listTasks(
  slug: string,
  filter: TaskFilter = {},
  opts: Opts = {},
): Promise<Paginated<Task>> {
  const query = new URLSearchParams();
  if (filter.mine) query.set('mine', '1');
  if (filter.state) query.set('state', filter.state);
  if (filter.round !== undefined) query.set('round', String(filter.round));
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

// Project administration (managers; creating needs the add_project permission, see Me).

export function createProject(data: ProjectCreate, opts: Opts = {}): Promise<Project> {
  return request<Project>('POST', '/api/projects/', { ...opts, body: data });
}

export function updateProject(slug: string, data: ProjectUpdate, opts: Opts = {}): Promise<Project> {
  return request<Project>('PATCH', `/api/projects/${seg(slug)}/`, { ...opts, body: data });
}

export function listMembers(slug: string, opts: Opts = {}): Promise<Membership[]> {
  return request<Membership[]>('GET', `/api/projects/${seg(slug)}/members/`, opts);
}

/** Adds a member, or changes the role of an existing one. */
export function setMember(slug: string, username: string, role: Role, opts: Opts = {}): Promise<Membership> {
  return request<Membership>('POST', `/api/projects/${seg(slug)}/members/`, {
    ...opts,
    body: { username, role },
  });
}

export function removeMember(slug: string, membershipId: number, opts: Opts = {}): Promise<null> {
  return request<null>('DELETE', `/api/projects/${seg(slug)}/members/${membershipId}/`, opts);
}

// Rounds and their batch pre-annotation.

export function listRounds(slug: string, opts: Opts = {}): Promise<Round[]> {
  return request<Round[]>('GET', `/api/projects/${seg(slug)}/rounds/`, opts);
}

/** Closes the open round and opens the next one. */
export function openRound(slug: string, opts: Opts = {}): Promise<Round> {
  return request<Round>('POST', `/api/projects/${seg(slug)}/rounds/`, opts);
}

export function listModelVersions(slug: string, opts: Opts = {}): Promise<ModelVersion[]> {
  return request<ModelVersion[]>('GET', `/api/projects/${seg(slug)}/model-versions/`, opts);
}

function preannotateUrl(slug: string, round: number): string {
  return `/api/projects/${seg(slug)}/rounds/${round}/preannotate/`;
}

export function getPreannotation(slug: string, round: number, opts: Opts = {}): Promise<PreannotationProgress> {
  return request<PreannotationProgress>('GET', preannotateUrl(slug, round), opts);
}

/** Queues the missing (or failed) pre-annotations of the round; `started` says how many. */
export function startPreannotation(slug: string, round: number, opts: Opts = {}): Promise<PreannotationProgress> {
  return request<PreannotationProgress>('POST', preannotateUrl(slug, round), opts);
}

// Queue management.

export function assignTask(id: number, username: string, opts: Opts = {}): Promise<Task> {
  return request<Task>('POST', `/api/tasks/${id}/assign/`, { ...opts, body: { user: username } });
}

export function releaseTask(id: number, opts: Opts = {}): Promise<Task> {
  return request<Task>('POST', `/api/tasks/${id}/release/`, opts);
}

export function reopenTask(id: number, reason: string, opts: Opts = {}): Promise<Task> {
  return request<Task>('POST', `/api/tasks/${id}/reopen/`, { ...opts, body: { reason } });
}

export function listTaskAudit(id: number, opts: Opts = {}): Promise<Paginated<AuditEvent>> {
  return request<Paginated<AuditEvent>>('GET', `/api/tasks/${id}/audit/`, opts);
}

// Imports from the configured PACS (the uploads are in upload.ts: they report progress).

export function searchPacs(slug: string, filter: PacsFilter = {}, opts: Opts = {}): Promise<PacsStudy[]> {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(filter)) {
    if (value && value.trim() !== '') query.set(name, value.trim());
  }
  const qs = query.toString();
  return request<PacsStudy[]>('GET', `/api/projects/${seg(slug)}/pacs/studies/${qs ? `?${qs}` : ''}`, opts);
}

/** True when an error body is an import report (a 400 means "nothing could be imported"). */
export function isImportReport(body: unknown): body is ImportReport {
  return body !== null && typeof body === 'object' && 'counts' in body && 'series' in body && 'files' in body;
}

/**
 * Pulls the studies from the PACS and imports them (synchronous: it answers when done).
 * Resolves with the report whatever its status; other errors throw.
 */
export async function importFromPacs(slug: string, studyUids: string[], opts: Opts = {}): Promise<ImportReport> {
  try {
    return await request<ImportReport>('POST', `/api/projects/${seg(slug)}/pacs/imports/`, {
      ...opts,
      body: { study_uids: studyUids },
    });
  } catch (err) {
    if (err instanceof ApiError && isImportReport(err.body)) return err.body;
    throw err;
  }
}

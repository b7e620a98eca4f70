// One typed function per API endpoint the front end uses.

import { ApiError, request, requestBinary, sameOriginPath } from './client';
import { gunzip, gzip } from './gzip';
import type {
  AuditEvent,
  Dashboard,
  EffortBatch,
  ImportReport,
  InferenceJob,
  Lesion,
  LesionWrite,
  MaskData,
  MaskVersion,
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
  Review,
  ReviewDecision,
  Role,
  Round,
  SegmentRequest,
  Task,
  TaskState,
  TrainingJob,
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

/**
 * Submits the task for review and answers with the updated task.
 * 409 when a lesion has no mask yet or the task is not editable; 403 for anyone but its annotator.
 */
export function submitTask(id: number, opts: Opts = {}): Promise<Task> {
  return request<Task>('POST', `/api/tasks/${id}/submit/`, opts);
}

/** Accepts or rejects a submitted task (a rejection needs a comment); answers with the review. */
export function reviewTask(
  id: number,
  decision: ReviewDecision,
  comment: string,
  opts: Opts = {},
): Promise<Review> {
  return request<Review>('POST', `/api/tasks/${id}/review/`, {
    ...opts,
    body: { decision, comment },
  });
}

export function acceptTask(id: number, comment = '', opts: Opts = {}): Promise<Review> {
  return reviewTask(id, 'accept', comment, opts);
}

/** Sends the task back to its annotator; the comment says what to change (required). */
export function rejectTask(id: number, comment: string, opts: Opts = {}): Promise<Review> {
  return reviewTask(id, 'reject', comment, opts);
}

/** The task's reviews, oldest first. */
export function listReviews(id: number, opts: Opts = {}): Promise<Review[]> {
  return request<Review[]>('GET', `/api/tasks/${id}/review/`, opts);
}

// The annotator's workspace: lesions, their versioned masks, segmentation jobs, effort.

/** Adds a lesion to the task (its annotator, while the task is assigned or rejected). */
export function createLesion(taskId: number, data: LesionWrite, opts: Opts = {}): Promise<Lesion> {
  return request<Lesion>('POST', `/api/tasks/${taskId}/lesions/`, { ...opts, body: data });
}

export function getLesion(id: number, opts: Opts = {}): Promise<Lesion> {
  return request<Lesion>('GET', `/api/lesions/${id}/`, opts);
}

/** Changes the class and / or the prompt (key slice, box) of a lesion. */
export function updateLesion(id: number, data: Partial<LesionWrite>, opts: Opts = {}): Promise<Lesion> {
  return request<Lesion>('PATCH', `/api/lesions/${id}/`, { ...opts, body: data });
}

/** Deletes the lesion and its whole mask history. */
export function deleteLesion(id: number, opts: Opts = {}): Promise<null> {
  return request<null>('DELETE', `/api/lesions/${id}/`, opts);
}

/** The lesion's mask history, oldest first (the last one is the latest). */
export function listMaskVersions(lesionId: number, opts: Opts = {}): Promise<MaskVersion[]> {
  return request<MaskVersion[]>('GET', `/api/lesions/${lesionId}/masks/`, opts);
}

export function getMaskVersion(id: number, opts: Opts = {}): Promise<MaskVersion> {
  return request<MaskVersion>('GET', `/api/masks/${id}/`, opts);
}

export interface SaveMaskOptions extends Opts {
  /** 'raw-gzip' (default): `mask` is gzip of z*y*x uint8; 'image': a NIfTI / NRRD / MHA file. */
  encoding?: 'raw-gzip' | 'image';
  filename?: string;
}

/**
 * Saves a mask version on top of `parent` (null: the lesion's first mask).
 * A stale parent answers 409: see `maskConflict` to tell it from other errors.
 */
export function saveMaskVersion(
  lesionId: number,
  parent: number | null,
  mask: Uint8Array<ArrayBuffer> | Blob,
  { encoding = 'raw-gzip', filename, signal }: SaveMaskOptions = {},
): Promise<MaskVersion> {
  const form = new FormData();
  // DRF reads an empty form value of a nullable field as null (a missing one is "required").
  form.append('parent', parent === null ? '' : String(parent));
  form.append('encoding', encoding);
  const blob = mask instanceof Blob ? mask : new Blob([mask], { type: 'application/gzip' });
  form.append('mask', blob, filename ?? (encoding === 'raw-gzip' ? 'mask.raw.gz' : 'mask.nii.gz'));
  return request<MaskVersion>('POST', `/api/lesions/${lesionId}/masks/`, { body: form, signal });
}

/** gzips a z*y*x uint8 mask and saves it (the viewer's path). */
export async function saveMask(
  lesionId: number,
  parent: number | null,
  voxels: Uint8Array,
  opts: Opts = {},
): Promise<MaskVersion> {
  return saveMaskVersion(lesionId, parent, await gzip(voxels), { ...opts, encoding: 'raw-gzip' });
}

/** What a 409 on a mask save says: someone saved a newer version meanwhile. */
export interface MaskConflict {
  message: string;
  /** The latest version's id when the server named it (null: the lesion has none); undefined if unsaid. */
  latest?: number | null;
}

/**
 * The mask conflict an error stands for, or null for any other error. The task-state 409
 * ("the task is submitted: its lesions cannot be changed") is not a mask conflict.
 */
export function maskConflict(err: unknown): MaskConflict | null {
  if (!(err instanceof ApiError) || err.status !== 409) return null;
  const parentMsg = err.fields.parent?.join(' ');
  if (parentMsg === undefined && !/changed meanwhile/i.test(err.message)) return null;
  const match = /latest is (\d+|None|null)/i.exec(parentMsg ?? err.message);
  const conflict: MaskConflict = { message: err.message };
  if (match) conflict.latest = /^\d+$/.test(match[1]!) ? Number(match[1]) : null;
  return conflict;
}

/** Where a version's voxels download from ('raw-gzip' by default, or a NIfTI for a person). */
export function maskDataUrl(id: number, encoding: 'raw-gzip' | 'nifti' = 'raw-gzip'): string {
  return `/api/masks/${id}/data/${encoding === 'nifti' ? '?encoding=nifti' : ''}`;
}

/** Parses X-Mask-Shape ("z,y,x"). */
export function parseMaskShape(header: string | null): [number, number, number] {
  const parts = (header ?? '').split(',').map((v) => Number(v.trim()));
  if (parts.length !== 3 || parts.some((n) => !Number.isInteger(n) || n < 0)) {
    throw new ApiError(0, `The server sent no valid mask shape (X-Mask-Shape: ${JSON.stringify(header)}).`);
  }
  return parts as [number, number, number];
}

/** Downloads and inflates a version's voxels (z*y*x uint8, shape from X-Mask-Shape). */
export async function fetchMaskData(id: number, opts: Opts = {}): Promise<MaskData> {
  const { bytes, headers } = await requestBinary('GET', maskDataUrl(id), opts);
  const shape = parseMaskShape(headers.get('X-Mask-Shape'));
  const voxels = await gunzip(bytes);
  const expected = shape[0] * shape[1] * shape[2];
  if (voxels.length !== expected) {
    throw new ApiError(0, `Mask ${id} holds ${voxels.length} voxels; its shape ${shape.join('x')} needs ${expected}.`);
  }
  return { shape, voxels };
}

/** Asks the model to segment the lesion (the prompt is recorded on the lesion); poll the job. */
export function requestSegmentation(lesionId: number, prompt: SegmentRequest, opts: Opts = {}): Promise<InferenceJob> {
  return request<InferenceJob>('POST', `/api/lesions/${lesionId}/segment/`, { ...opts, body: prompt });
}

export function getJob(id: number, opts: Opts = {}): Promise<InferenceJob> {
  return request<InferenceJob>('GET', `/api/jobs/${id}/`, opts);
}

/** Records active intervals and tool interactions (the task's annotator only: 403 otherwise). */
export function postEffort(
  taskId: number,
  batch: EffortBatch,
  opts: Opts & { keepalive?: boolean } = {},
): Promise<EffortBatch> {
  return request<EffortBatch>('POST', `/api/tasks/${taskId}/effort/`, { ...opts, body: batch });
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

/** Makes a model version the project's active one: the next round opened pre-annotates with it. */
export function promoteModelVersion(slug: string, id: number, opts: Opts = {}): Promise<unknown> {
  return request<unknown>('POST', `/api/projects/${seg(slug)}/model-versions/${id}/promote/`, opts);
}

/** Queues the training of the project's model on the accepted tasks of rounds 0..`round`. */
export function trainRound(slug: string, round: number, opts: Opts = {}): Promise<TrainingJob> {
  return request<TrainingJob>('POST', `/api/projects/${seg(slug)}/rounds/${round}/train/`, opts);
}

export function getTrainingJob(id: number, opts: Opts = {}): Promise<TrainingJob> {
  return request<TrainingJob>('GET', `/api/training-jobs/${id}/`, opts);
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

// Shapes of the Django REST API (same origin, session auth): the API's own types are generated
// from its OpenAPI schema (schema.d.ts, `make api-types`; `make test` checks it is current);
// what the schema does not describe (the viewer's mask data, prompts' tuples, the import
// report's open-ended counts) is written here.

import type { components } from './schema';

type Schemas = components['schemas'];

export type Me = Schemas['Me'];

export interface Paginated<T> {
  count: number;
  next: string | null;
  previous: string | null;
  results: T[];
}

export type Role = Schemas['RoleEnum'];

export type LesionClass = Schemas['LesionClass'];

export type WindowPreset = Schemas['WindowPreset'];

export type Assignment = Schemas['AssignmentEnum'];
export type Ordering = Schemas['OrderingEnum'];

/** The queue and review rules of a project. */
export interface ProjectRules {
  assignment: Assignment;
  ordering: Ordering;
  /** N > 1: an agreement study, each series gets N independent tasks. */
  annotators_per_task: number;
  reviewer_must_differ: boolean;
}

export type Project = Schemas['Project'];

/** POST /api/projects/. */
export type ProjectCreate = Schemas['ProjectCreateRequest'];

/** PATCH /api/projects/<slug>/: slug and modality are fixed. */
export type ProjectUpdate = Schemas['PatchedProjectUpdateRequest'];

export type TaskState = Schemas['TaskStateEnum'];

export type ReviewDecision = Schemas['DecisionEnum'];

export type Review = Schemas['Review'];

export type SeriesSummary = Schemas['SeriesBrief'];

export type Task = Schemas['Task'];

export type MaskSource = Schemas['SourceEnum'];

export type MaskVersion = Schemas['MaskVersion'];

export type Box = [number, number, number, number];

export type Lesion = Schemas['Lesion'];

/** POST /api/tasks/<id>/lesions/ and PATCH /api/lesions/<id>/. */
export type LesionWrite = Schemas['LesionWriteRequest'];

/** The wire encodings of POST /api/lesions/<id>/masks/ (annotator.masks.ENCODINGS). */
export type MaskEncoding = 'raw-gzip' | 'image';

/** A mask as the viewer holds it: z*y*x bytes in C order, non-zero = foreground. */
export interface MaskData {
  /** [z, y, x] from the X-Mask-Shape header. */
  shape: [number, number, number];
  voxels: Uint8Array<ArrayBuffer>;
}

/** A voxel [x, y, z] (click prompts). */
export type Point = [number, number, number];

/** POST /api/lesions/<id>/segment/. */
export type SegmentRequest = Schemas['SegmentRequestRequest'];

export type JobState = Schemas['JobStateEnum'];

export type InferenceJob = Schemas['InferenceJob'];

export type EffortTool = Schemas['ToolEnum'];

export type EffortInterval = Schemas['IntervalRequest'];

export type EffortInteraction = Schemas['InteractionRequest'];

/** POST /api/tasks/<id>/effort/. */
export type EffortBatch = Required<Schemas['EffortRequest']>;

export type RoundEffort = Schemas['RoundEffort'];

export type QueueDepth = { round: number; total: number } & Record<TaskState, number>;

export type ThroughputRow = Schemas['Throughput'];

export type AnnotatorEffort = Schemas['AnnotatorEffort'];

export type CostBasis = Schemas['CostBasisEnum'];

export type Dashboard = Schemas['Dashboard'];

export type Membership = Schemas['Membership'];

export type RoundState = Schemas['RoundStateEnum'];

export type Round = Schemas['Round'];

export type ModelVersion = Schemas['ModelVersion'];

export type TrainingJobState = 'queued' | 'running' | 'succeeded' | 'failed';

export type TrainingJob = Schemas['TrainingJob'];

export interface PreannotationFailure {
  job: number;
  lesion: number;
  task: number;
  error: string;
}

/** A job still to finish that lost its worker and was queued again. */
export interface PreannotationNotice {
  job: number;
  lesion: number;
  task: number;
  state: 'queued' | 'running';
  notice: string;
}

export type PreannotationProgress = Schemas['PreannotationProgress'];

export type AuditEvent = Schemas['AuditEvent'];

/** One input file of a DICOM import (`source` is the name the user knows). */
export interface ImportFileOutcome {
  source: string;
  status: string;
  reason: string;
  series_instance_uid: string;
  sop_instance_uid: string;
}

export type ImportSeriesStatus = 'imported' | 'already imported' | 'rejected';

export interface ImportSeriesSummary {
  series_instance_uid: string;
  study_instance_uid: string;
  modality: string;
  description: string;
  status: ImportSeriesStatus | string;
  reason: string;
  instances: number;
  slices: number;
  size: number[] | null;
  spacing: number[] | null;
  warnings: string[];
  series_id: number | null;
  volume_id: number | null;
  task_id: number | null;
}

/** The body of a DICOM import (upload or PACS), whatever its status (201, 200 or 400). */
export interface ImportReport {
  /** "files", "files <status>", "series", "series <status>" -> count. */
  counts: Record<string, number>;
  series: ImportSeriesSummary[];
  files: ImportFileOutcome[];
}

/** The answer to one image / video upload (POST /volumes/). */
export type VolumeUploadResult = Schemas['VolumeUploaded'];

export type PacsStudy = Schemas['PacsStudy'];

export type PacsFilterName = 'PatientID' | 'PatientName' | 'StudyDate' | 'AccessionNumber' | 'ModalitiesInStudy';
export type PacsFilter = Partial<Record<PacsFilterName, string>>;

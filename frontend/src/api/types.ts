// Shapes returned by the Django REST API (same origin, session auth).

export interface Me {
  id: number;
  username: string;
  can_create_projects: boolean;
}

export interface Paginated<T> {
  count: number;
  next: string | null;
  previous: string | null;
  results: T[];
}

export type Role = 'manager' | 'annotator' | 'reviewer';

export interface LesionClass {
  name: string;
  color: string;
}

export interface WindowPreset {
  name: string;
  center: number;
  width: number;
}

export type Assignment = 'pool' | 'assigned';
export type Ordering = 'priority' | 'low_confidence';

/** The queue and review rules of a project. */
export interface ProjectRules {
  assignment: Assignment;
  ordering: Ordering;
  /** N > 1: an agreement study, each series gets N independent tasks. */
  annotators_per_task: number;
  reviewer_must_differ: boolean;
}

export interface Project extends ProjectRules {
  id: number;
  slug: string;
  name: string;
  description: string;
  modality: string;
  lesion_classes: LesionClass[];
  window_presets: WindowPreset[];
  deidentify: boolean;
  active_model_version: number | null;
  my_role: Role;
  current_round: number | null;
  created: string;
}

/** POST /api/projects/ (ProjectCreateSerializer). */
export interface ProjectCreate extends Partial<ProjectRules> {
  name: string;
  slug: string;
  description?: string;
  modality: string;
  lesion_classes: { name: string; color?: string }[];
  window_presets?: WindowPreset[];
  deidentify?: boolean;
}

/** PATCH /api/projects/<slug>/ (ProjectUpdateSerializer): slug and modality are fixed. */
export type ProjectUpdate = Partial<Omit<ProjectCreate, 'slug' | 'modality'>>;

export type TaskState = 'unassigned' | 'assigned' | 'submitted' | 'accepted' | 'rejected';

export type ReviewDecision = 'accept' | 'reject';

export interface Review {
  id?: number;
  decision: ReviewDecision;
  comment: string;
  reviewer: string;
  created: string;
}

export interface SeriesSummary {
  id: number;
  description: string;
  modality: string;
}

export interface Task {
  id: number;
  /** Slug of the project the task belongs to. */
  project: string;
  round: number;
  series: SeriesSummary;
  volume?: number;
  state: TaskState;
  /** Copy k of N in an agreement study. */
  copy?: number;
  priority?: number;
  model_confidence?: number | null;
  assignee: string | null;
  reviewer: string | null;
  lesion_count: number;
  claimed_at?: string | null;
  submitted_at?: string | null;
  updated: string;
  last_review: Review | null;
}

export type MaskSource = 'model' | 'human' | 'import';

export interface MaskVersion {
  id: number;
  /** The lesion it belongs to (absent in older payloads the front end built itself). */
  lesion?: number;
  /** The version this one was saved on top of; null for a lesion's first mask. */
  parent?: number | null;
  source: MaskSource;
  voxel_count: number;
  created: string;
  /** Username, model name or backend that produced it. */
  author: string;
  author_user?: number | null;
  author_model?: number | null;
  author_backend?: string;
}

export type Box = [number, number, number, number];

export interface Lesion {
  id: number;
  task: number;
  lesion_class: string;
  key_slice: number | null;
  box: Box | null;
  latest_mask: MaskVersion | null;
  created?: string;
}

/** POST /api/tasks/<id>/lesions/ and PATCH /api/lesions/<id>/ (LesionWriteSerializer). */
export interface LesionWrite {
  lesion_class: string;
  /** A box needs its key slice; both are checked against the volume's grid. */
  key_slice?: number | null;
  /** [x0, y0, x1, y1], inclusive voxel indices on the key slice (x = column, y = row). */
  box?: Box | null;
}

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

/** POST /api/lesions/<id>/segment/ (SegmentRequestSerializer). */
export interface SegmentRequest {
  /** Required unless mask_slice is given. */
  key_slice?: number;
  /** Required unless mask_slice is given (then the box around that slice's mask). */
  box?: Box;
  /** At most 32 each. */
  positive_points?: Point[];
  negative_points?: Point[];
  /** "Propagate my correction": this slice of the latest *saved* mask is kept and propagated. */
  mask_slice?: number;
  /** [z0, z1] inclusive: the slices the model may change (must include the prompted ones). */
  z_range?: [number, number];
}

export type JobState = 'queued' | 'running' | 'succeeded' | 'failed';

/** GET /api/jobs/<id>/ (InferenceJobSerializer). */
export interface InferenceJob {
  id: number;
  kind: 'segment';
  lesion: number;
  prompt: Record<string, unknown>;
  backend: string;
  model_version: number | null;
  queue: string;
  state: JobState;
  /** 0..1 (progress_done / progress_total; 0 while the total is unknown). */
  progress: number;
  progress_done: number;
  progress_total: number;
  error: string;
  /** What happened short of failing, e.g. "worker lost: ...; re-queued (attempt 2 of 3)". */
  notice: string;
  /** Runs started so far (at most 3). */
  attempts: number;
  /** The worker of the current run, "host:pid:..." (empty before the first). */
  worker: string;
  /** When that worker last said it was alive. */
  heartbeat_at: string | null;
  timings: Record<string, unknown>;
  /** The mask version the job saved (succeeded jobs). */
  result: number | null;
  created: string;
  started_at: string | null;
  finished_at: string | null;
}

/** annotator.models.Interaction.Tool */
export type EffortTool =
  | 'box'
  | 'point+'
  | 'point-'
  | 'brush'
  | 'eraser'
  | 'threshold'
  | 'propagate'
  | 'undo'
  | 'redo';

/** One stretch of active work (IntervalSerializer); ISO 8601 datetimes. */
export interface EffortInterval {
  started_at: string;
  ended_at: string;
  lesion?: number | null;
}

/** One use of a tool (InteractionSerializer). */
export interface EffortInteraction {
  tool: EffortTool;
  at: string;
  lesion?: number | null;
  slice_index?: number | null;
}

/** POST /api/tasks/<id>/effort/ (EffortSerializer); the 201 answer echoes it. */
export interface EffortBatch {
  intervals: EffortInterval[];
  interactions: EffortInteraction[];
}

/** One round of the manager's dashboard (lesions of submitted or accepted tasks). */
export interface RoundEffort {
  round: number;
  tasks: number;
  lesions: number;
  /** Lesions finished, none with a model mask: a candidate baseline. */
  manual: boolean;
  model_version: string | null;
  median_active_s: number | null;
  mean_active_s: number | null;
  model_dice_median: number | null;
  model_dice_mean: number | null;
  model_hd95_median_mm: number | null;
  edited_fraction_mean: number | null;
  accepted_without_edits: number | null;
  slices: number;
  slices_fixed: number;
  cost_reduction: number | null;
}

export type QueueDepth = { round: number; total: number } & Record<TaskState, number>;

export interface ThroughputRow {
  /** ISO date (YYYY-MM-DD). */
  day: string;
  annotator: string;
  submitted: number;
  accepted: number;
}

export interface AnnotatorEffort {
  annotator: string;
  tasks: number;
  lesions: number;
  active_s: number;
  median_active_s: number | null;
}

export type CostBasis = 'manual_round' | 'slice_estimate';

export interface Dashboard {
  project: string;
  cost_basis: CostBasis | null;
  baseline_round: number | null;
  baseline_cost_s: number | null;
  cost_definition: string;
  rounds: RoundEffort[];
  queue: QueueDepth[];
  throughput: ThroughputRow[];
  annotators: AnnotatorEffort[];
}

export interface Membership {
  id: number;
  user: number;
  username: string;
  role: Role;
  created: string;
}

export type RoundState = 'open' | 'closed';

export interface Round {
  id: number;
  number: number;
  state: RoundState;
  /** Id of the model version that pre-annotates the round (null: the untrained default). */
  model_version: number | null;
  opened_at: string;
  closed_at: string | null;
}

export interface ModelVersion {
  id: number;
  name: string;
  backend: string;
  checkpoint: string;
  metrics: Record<string, unknown>;
  /** Round numbers. */
  trained_from_rounds: number[];
  created: string;
}

export type TrainingJobState = 'queued' | 'running' | 'succeeded' | 'failed';

export interface TrainingJob {
  id: number;
  project: string;
  round: number;
  state: TrainingJobState;
  /** 0..1 */
  progress: number;
  progress_done: number;
  progress_total: number;
  error: string;
  /** What happened short of failing, e.g. "worker lost: ...; re-queued (attempt 2 of 3)". */
  notice: string;
  /** Runs started so far (at most 3). */
  attempts: number;
  worker: string;
  heartbeat_at: string | null;
  /** The model it trained, once it succeeded. */
  result: ModelVersion | null;
  created: string;
  started_at: string | null;
  finished_at: string | null;
}

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

/** The latest gpu-batch job of each lesion of a round, counted by state. */
export interface PreannotationProgress {
  total: number;
  queued: number;
  running: number;
  succeeded: number;
  failed: number;
  failures: PreannotationFailure[];
  notices: PreannotationNotice[];
  /** Only in the answer to a start: how many jobs that call queued. */
  started?: number;
}

export interface AuditEvent {
  id: number;
  action: string;
  task: number | null;
  actor: string | null;
  data: Record<string, unknown>;
  created: string;
}

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
export interface VolumeUploadResult {
  series: number;
  volume: number;
  task: number | null;
  size: number[];
  spacing: number[];
  lesions: number[];
}

/** One study found on the configured PACS (QIDO-RS); multi-valued fields come as lists. */
export interface PacsStudy {
  study_instance_uid: string;
  patient_id?: string;
  patient_name?: string;
  study_date?: string;
  description?: string;
  accession_number?: string;
  modalities?: string | string[];
  instances?: number | string;
}

export type PacsFilterName = 'PatientID' | 'PatientName' | 'StudyDate' | 'AccessionNumber' | 'ModalitiesInStudy';
export type PacsFilter = Partial<Record<PacsFilterName, string>>;

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

export interface Project {
  id: number;
  slug: string;
  name: string;
  modality: string;
  lesion_classes: LesionClass[];
  window_presets: WindowPreset[];
  active_model_version: number | null;
  my_role: Role;
  current_round: number | null;
  created: string;
}

export type TaskState = 'unassigned' | 'assigned' | 'submitted' | 'accepted' | 'rejected';

export type ReviewDecision = 'accept' | 'reject';

export interface Review {
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
  state: TaskState;
  assignee: string | null;
  reviewer: string | null;
  lesion_count: number;
  updated: string;
  last_review: Review | null;
}

export type MaskSource = 'model' | 'human' | 'import';

export interface MaskVersion {
  id: number;
  source: MaskSource;
  voxel_count: number;
  created: string;
  author: string;
}

export type Box = [number, number, number, number];

export interface Lesion {
  id: number;
  task: number;
  lesion_class: string;
  key_slice: number | null;
  box: Box | null;
  latest_mask: MaskVersion | null;
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

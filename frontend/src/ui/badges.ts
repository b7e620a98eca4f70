import type { MaskSource, ReviewDecision, Role, TaskState } from '../api';
import { h } from './dom';

const STATE_LABELS: Record<TaskState, string> = {
  unassigned: 'Unassigned',
  assigned: 'Assigned',
  submitted: 'Submitted',
  accepted: 'Accepted',
  rejected: 'Rejected',
};

const ROLE_LABELS: Record<Role, string> = {
  manager: 'Manager',
  annotator: 'Annotator',
  reviewer: 'Reviewer',
};

const SOURCE_LABELS: Record<MaskSource, string> = {
  model: 'Model',
  human: 'Human',
  import: 'Import',
};

function badge(kind: string, label: string, title?: string): HTMLElement {
  return h('span', { class: `badge badge-${kind}`, title }, label);
}

export function stateBadge(state: TaskState): HTMLElement {
  return badge(`state-${state}`, STATE_LABELS[state] ?? state, `State: ${state}`);
}

/** ``null``: not a member (staff see every project). */
export function roleBadge(role: Role | null): HTMLElement {
  if (role === null) return badge('role-none', 'Not a member');
  return badge(`role-${role}`, ROLE_LABELS[role] ?? role);
}

export function sourceBadge(source: MaskSource): HTMLElement {
  return badge(`source-${source}`, SOURCE_LABELS[source] ?? source);
}

export function decisionBadge(decision: ReviewDecision): HTMLElement {
  return badge(decision === 'accept' ? 'state-accepted' : 'state-rejected',
    decision === 'accept' ? 'Accepted' : 'Rejected');
}

const HEX_COLOR = /^#[0-9a-f]{3,8}$/i;

/** Colored dot for a lesion class; unknown or malformed colors fall back to grey. */
export function swatch(color: string | undefined): HTMLElement {
  const el = h('span', { class: 'swatch', 'aria-hidden': 'true' });
  if (color && HEX_COLOR.test(color)) el.style.background = color;
  return el;
}

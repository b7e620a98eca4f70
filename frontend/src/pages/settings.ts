// #/projects/<slug>/settings  Project settings and members (managers).

import {
  getProject, listMembers, removeMember, setMember, updateProject,
  type Membership, type Project, type ProjectUpdate, type Role,
} from '../api';
import { currentUser } from '../store';
import { h } from '../ui/dom';
import { emptyState, errorBanner, isAbort, notice } from '../ui/feedback';
import { clearFormErrors, field, input, select, setBusy, showClientErrors, showFormErrors, type ErrorTarget } from '../ui/forms';
import { formatDate } from '../ui/format';
import { isManager, managerHead, managersOnly } from '../ui/managerNav';
import { projectForm, projectValues } from '../ui/projectForm';
import type { PageContext } from './page';

export const ROLES: { value: Role; label: string }[] = [
  { value: 'annotator', label: 'Annotator' },
  { value: 'reviewer', label: 'Reviewer' },
  { value: 'manager', label: 'Manager' },
];

const ROLE_HELP = 'Annotators draw lesions, reviewers accept or reject submitted tasks, ' +
  'managers configure the project, import studies and run rounds (they can annotate too).';

function membersCard(project: Project, initial: Membership[], ctx: PageContext): HTMLElement {
  const slot = h('div', { class: 'slot' });
  const tableSlot = h('div');
  let members = initial;
  const me = currentUser();

  const render = (): void => {
    if (members.length === 0) {
      tableSlot.replaceChildren(emptyState('No members.'));
      return;
    }
    const rows = members.map((m) => {
      const roleSelect = select(ROLES, m.role);
      roleSelect.setAttribute('aria-label', `Role of ${m.username}`);
      const remove = h('button', { type: 'button', class: 'btn btn-small btn-danger' }, 'Remove');
      const isMe = me?.username === m.username;

      roleSelect.addEventListener('change', async () => {
        const role = roleSelect.value as Role;
        if (isMe && role !== 'manager' &&
          !window.confirm('You will no longer manage this project. Change your own role?')) {
          roleSelect.value = m.role;
          return;
        }
        roleSelect.disabled = remove.disabled = true;
        slot.replaceChildren();
        try {
          const updated = await setMember(project.slug, m.username, role, { signal: ctx.signal });
          members = members.map((x) => (x.id === m.id ? updated : x));
          slot.replaceChildren(notice(`${m.username} is now ${role === 'annotator' ? 'an' : 'a'} ${role}.`, 'success'));
          render();
        } catch (err) {
          if (isAbort(err)) return;
          roleSelect.value = m.role;
          roleSelect.disabled = remove.disabled = false;
          slot.replaceChildren(errorBanner(err, `Could not change the role of ${m.username}`));
        }
      });
      remove.addEventListener('click', async () => {
        if (!window.confirm(`Remove ${m.username} from ${project.name}? Their finished work stays.`)) return;
        roleSelect.disabled = remove.disabled = true;
        setBusy(remove, true, 'Removing…');
        slot.replaceChildren();
        try {
          await removeMember(project.slug, m.id, { signal: ctx.signal });
          members = members.filter((x) => x.id !== m.id);
          slot.replaceChildren(notice(`${m.username} was removed.`, 'success'));
          render();
        } catch (err) {
          if (isAbort(err)) return;
          setBusy(remove, false);
          roleSelect.disabled = false;
          slot.replaceChildren(errorBanner(err, `Could not remove ${m.username}`));
        }
      });
      return h('tr', null,
        h('td', { class: 'strong' }, m.username, isMe ? h('span', { class: 'muted' }, ' (you)') : null),
        h('td', null, roleSelect),
        h('td', { class: 'muted' }, formatDate(m.created)),
        h('td', { class: 'actions-cell' }, remove),
      );
    });
    tableSlot.replaceChildren(h('div', { class: 'table-wrap' }, h('table', { class: 'data', 'aria-label': 'Members' },
      h('thead', null, h('tr', null,
        h('th', null, 'User'), h('th', null, 'Role'), h('th', null, 'Member since'), h('th'))),
      h('tbody', null, rows),
    )));
  };

  // Add a member.
  const username = field('Username', input({ autocomplete: 'off', spellcheck: false, required: true }));
  const role = field('Role', select(ROLES, 'annotator'));
  const addSlot = h('div', { class: 'slot' });
  const addButton = h('button', { type: 'submit', class: 'btn btn-primary' }, 'Add member');
  const targets = new Map<string, ErrorTarget>([['username', username], ['role', role]]);
  const form = h('form', { class: 'inline-form', novalidate: true },
    username.el, role.el, h('div', { class: 'field field-button' }, addButton));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (addButton.disabled) return;
    clearFormErrors(targets, addSlot);
    const name = username.control.value.trim();
    if (name === '') {
      showClientErrors({ username: ['Type the username of an existing account.'] }, 'Check the highlighted fields.', targets, addSlot, 'Not added');
      username.control.focus();
      return;
    }
    const existing = members.find((m) => m.username === name);
    setBusy(addButton, true, 'Adding…');
    try {
      const added = await setMember(project.slug, name, role.control.value as Role, { signal: ctx.signal });
      members = existing
        ? members.map((m) => (m.id === added.id ? added : m))
        : [...members, added].sort((a, b) => a.username.localeCompare(b.username));
      username.control.value = '';
      addSlot.replaceChildren(notice(existing
        ? `${added.username} was already a member: role changed to ${added.role}.`
        : `${added.username} added as ${added.role}.`, 'success'));
      render();
    } catch (err) {
      if (!isAbort(err)) showFormErrors(err, targets, addSlot, 'Not added')?.focus();
    } finally {
      if (!ctx.signal.aborted) setBusy(addButton, false);
    }
  });

  render();
  return h('section', { class: 'card', id: 'members' },
    h('h2', null, 'Members'),
    h('p', { class: 'hint' }, ROLE_HELP),
    tableSlot,
    slot,
    h('h3', null, 'Add a member'),
    form,
    addSlot,
  );
}

export async function settingsPage(root: HTMLElement, ctx: PageContext, slug: string): Promise<void> {
  const opts = { signal: ctx.signal };
  const project = await getProject(slug, opts);
  if (!isManager(project)) {
    root.replaceChildren(...managersOnly(project));
    return;
  }
  const members = await listMembers(slug, opts);
  const saved = h('div', { class: 'slot' });

  const form = projectForm({
    mode: 'update',
    initial: projectValues(project),
    submitLabel: 'Save settings',
    busyLabel: 'Saving…',
    errorTitle: 'Settings not saved',
    signal: ctx.signal,
    submit: async (payload) => {
      saved.replaceChildren();
      const updated = await updateProject(slug, payload as ProjectUpdate, opts);
      const title = root.querySelector('h1');
      if (title) title.textContent = 'Settings';
      saved.replaceChildren(notice(`Settings of “${updated.name}” saved.`, 'success'));
      saved.scrollIntoView({ block: 'nearest' });
    },
  });
  form.querySelector('.form-actions')?.append(saved);

  root.replaceChildren(
    ...managerHead(project, 'settings', 'Settings',
      `${project.slug} · ${project.modality} · created ${formatDate(project.created)}`),
    h('div', { class: 'settings-layout' }, form, membersCard(project, members, ctx)),
  );
}

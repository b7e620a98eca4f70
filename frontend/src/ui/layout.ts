// Top bar and page frame.

import { csrfToken, type Me } from '../api';
import { href } from '../router';
import { h } from './dom';
import { showShortcutHelp } from './shortcuts';

export const PRODUCT_NAME = 'Lesion Annotator';
export const LOGIN_URL = '/accounts/login/?next=/';
const LOGOUT_URL = '/accounts/logout/';

/** Django 5 only logs out on POST; the CSRF token is read when the form is sent. */
function logoutForm(): HTMLFormElement {
  const token = h('input', { type: 'hidden', name: 'csrfmiddlewaretoken', value: '' });
  const form = h('form', { method: 'post', action: LOGOUT_URL, class: 'logout' },
    token,
    h('button', { type: 'submit', class: 'btn btn-ghost' }, 'Log out'),
  );
  form.addEventListener('submit', () => {
    token.value = csrfToken() ?? '';
  });
  return form;
}

export function topBar(me: Me | null): HTMLElement {
  return h('header', { class: 'topbar' },
    h('a', { class: 'brand', href: href.projects() }, PRODUCT_NAME),
    h('div', { class: 'topbar-right' },
      h('button', {
        type: 'button',
        class: 'btn btn-ghost btn-icon',
        title: 'Keyboard shortcuts (?)',
        'aria-label': 'Keyboard shortcuts',
        onclick: showShortcutHelp,
      }, '?'),
      me ? h('span', { class: 'user', title: 'Signed in as' }, me.username) : null,
      me ? logoutForm() : null,
    ),
  );
}

export interface Crumb {
  label: string;
  href?: string;
}

export function breadcrumbs(crumbs: Crumb[]): HTMLElement {
  return h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' },
    h('ol', null, crumbs.map((c, i) =>
      h('li', null,
        c.href && i < crumbs.length - 1
          ? h('a', { href: c.href }, c.label)
          : h('span', { 'aria-current': i === crumbs.length - 1 ? 'page' : null }, c.label),
      ),
    )),
  );
}

export function setTitle(...parts: string[]): void {
  document.title = [...parts, PRODUCT_NAME].join(' · ');
}

import { href } from '../router';
import { h } from '../ui/dom';
import { setTitle } from '../ui/layout';

export function notFoundPage(root: HTMLElement, path: string): void {
  setTitle('Not found');
  root.replaceChildren(
    h('div', { class: 'page-head' }, h('h1', null, 'Page not found')),
    h('section', { class: 'card' },
      h('p', null, 'There is no page at ', h('code', null, path), '.'),
      h('p', null, h('a', { href: href.projects() }, 'Back to my projects')),
    ),
  );
}

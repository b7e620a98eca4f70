// App-wide state. Small on purpose: pages fetch their own data.

import type { Me } from './api';

interface AppState {
  me: Me | null;
  /** One-shot message shown on the next page rendered (e.g. "Task #4 submitted"). */
  flash: string | null;
}

const state: AppState = { me: null, flash: null };

export function currentUser(): Me | null {
  return state.me;
}

export function setCurrentUser(me: Me): void {
  state.me = me;
}

export function setFlash(message: string): void {
  state.flash = message;
}

export function takeFlash(): string | null {
  const message = state.flash;
  state.flash = null;
  return message;
}

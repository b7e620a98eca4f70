import type { Me } from '../api';
import type { Shortcut } from '../ui/shortcuts';

/** What every page gets from the app shell. */
export interface PageContext {
  /** Aborted when the user navigates away: pass it to every request. */
  signal: AbortSignal;
  me: Me;
  /** Registers a shortcut that lives until the next navigation. */
  addShortcut: (shortcut: Shortcut) => void;
}

// What every page shares with the shell (app.tsx): the signed-in role, a way to announce what happened
// (a polite live region and the status line), switching keys, and error text for people.
import { createContext } from 'preact';
import { useContext } from 'preact/hooks';
import { ApiError } from './api.ts';

export type Role = 'tenant' | 'admin';

export interface Shell {
  /** Says `message` to screen readers and shows it in the status line. */
  announce(message: string): void;
  /** Signs in with another key in this tab (the admin's "sign in with this key"). */
  switchKey(key: string): Promise<void>;
}

export const ShellContext = createContext<Shell>({ announce: () => {}, switchKey: async () => {} });
export const useShell = () => useContext(ShellContext);

/** An error for people: the API's message, or what went wrong on the way. */
export function errorText(e: unknown): string {
  if (e instanceof ApiError) return e.status === 401 ? `${e.message} — sign in again` : e.message;
  return e instanceof Error ? e.message : String(e);
}

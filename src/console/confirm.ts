// The confirmation every operator action goes through: a modal <dialog>
// (focus moves into it and is trapped by the browser, Escape cancels), with
// a note and a participant choice for resolving a heuristic.

import { byId, el, fill } from './dom.js';

export interface ConfirmRequest {
  readonly title: string;
  readonly text: string;
  readonly confirmLabel: string;
  /** Ask for a note (1..1000 characters) and which participant it is about ('' = all). */
  readonly note?: { readonly participants: readonly string[] };
}

export interface Confirmed {
  readonly note: string;
  readonly participant: string;
}

/** Resolves with what the operator entered once confirmed, or null when cancelled. */
export function confirmAction(request: ConfirmRequest): Promise<Confirmed | null> {
  const dialog = byId<HTMLDialogElement>('confirm');
  const noteField = byId('confirm-note-field');
  const note = byId<HTMLTextAreaElement>('confirm-note');
  const participant = byId<HTMLSelectElement>('confirm-participant');
  byId('confirm-title').textContent = request.title;
  byId('confirm-text').textContent = request.text;
  byId('confirm-ok').textContent = request.confirmLabel;
  noteField.hidden = request.note === undefined;
  note.required = request.note !== undefined;
  note.value = '';
  fill(
    participant,
    el('option', { value: '' }, 'every unresolved one'),
    ...(request.note?.participants ?? []).map((name) => el('option', { value: name }, name)),
  );
  dialog.returnValue = '';
  return new Promise((resolve) => {
    dialog.addEventListener(
      'close',
      () => {
        if (dialog.returnValue !== 'ok') return resolve(null);
        resolve({ note: note.value.trim(), participant: participant.value });
      },
      { once: true },
    );
    dialog.showModal();
    (request.note === undefined ? byId('confirm-cancel') : note).focus();
  });
}

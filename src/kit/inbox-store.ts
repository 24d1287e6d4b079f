// What the inbox needs from the service's database: run the handler's work
// in one database transaction together with the insert of the message's id,
// so the work and "this message was applied" commit or roll back together.
// A second delivery of the same id finds the row and runs nothing.

export type InboxOutcome = 'applied' | 'duplicate';

export interface InboxStore<Tx> {
  /**
   * In one database transaction: records (inbox, messageId) and runs `work`.
   * 'duplicate' (work not run) when the id was already recorded by a
   * committed transaction; the work's error rolls everything back.
   */
  once(inbox: string, messageId: string, work: (tx: Tx) => Promise<void>): Promise<InboxOutcome>;
  /** Deletes up to `limit` rows received more than `olderThanMs` ago; answers how many. */
  prune(olderThanMs: number, limit?: number): Promise<number>;
}

/** Rows deleted per prune call unless the caller says otherwise: a bounded transaction. */
export const PRUNE_LIMIT_DEFAULT = 10_000;
/** Longest message id recorded: commitd's ids are far shorter; a longer one is refused (the handler never runs). */
export const MESSAGE_ID_LENGTH_MAX = 512;

// Hands out recovered transactions' recovery steps a few at a time.
//
// Every recovered transaction is live (readable, answerable, its deadline
// kept) from the start, but its recovery step is handed out only while few
// participant calls are outstanding: tens of thousands of messages at once
// would sit in queues long enough to outlive the young generation, and the
// heap would grow by all of them before a major collection. Any event that
// reaches a queued transaction first (a client's call, its deadline) is
// handled as it would be after its recovery step, which is idempotent.

export class RecoveryPacer<T> {
  /** Recovered transactions whose step has not been handed out yet, from `next` on. */
  private queue: T[] = [];
  private next = 0;
  private stepsRunning = 0;
  /** Participant calls made and not yet answered (the client always answers, if only with a timeout). */
  private callsOutstanding = 0;

  constructor(
    /** Steps are handed out while fewer calls than this are outstanding. */
    private readonly callsMax: number,
    private readonly runStep: (item: T) => Promise<unknown>,
  ) {}

  enqueue(items: readonly T[]): void {
    this.queue.push(...items);
    this.pump();
  }

  callStarted(): void {
    this.callsOutstanding++;
  }

  callAnswered(): void {
    this.callsOutstanding--;
    if (this.next < this.queue.length) this.pump();
  }

  private pump(): void {
    while (this.next < this.queue.length && this.callsOutstanding + this.stepsRunning < this.callsMax) {
      const item = this.queue[this.next++] as T;
      this.stepsRunning++;
      this.runStep(item).finally(() => {
        this.stepsRunning--;
        this.pump();
      });
    }
    if (this.next >= this.queue.length && this.queue.length > 0) {
      this.queue = [];
      this.next = 0;
    }
  }
}

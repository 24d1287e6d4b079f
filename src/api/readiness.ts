// Whether the service takes calls: set by serve.ts once recovery is under
// way, cleared on shutdown; read by access control (503 while not ready) and
// /readyz. Apart from server.ts so that what reads it need not import the server.

/** What /readyz reports: set by main once recovery is under way, cleared on shutdown. */
export interface Readiness {
  ready: boolean;
  stopping: boolean;
  /** False while the last write to the decision log failed (a full disk): no decision can be made durable. */
  logWritable: boolean;
}

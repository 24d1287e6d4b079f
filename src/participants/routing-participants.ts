// The one participant client the coordinator sees: a call goes to the HTTP
// client, the database participants or the message participants by the
// target's kind (a url, a database or a message), so the coordinator never
// needs to know there are three.

import type { PhaseTwoMessage } from '../protocol/types.js';
import type { ParticipantClient, ParticipantTarget, PhaseTwoAnswer, PrepareAnswer } from './participant-client.js';

export class RoutingParticipants implements ParticipantClient {
  constructor(
    private readonly http: ParticipantClient,
    private readonly databases: ParticipantClient,
    private readonly messages: ParticipantClient,
  ) {}

  prepare(
    txId: string,
    target: ParticipantTarget,
    payloadJson: string | null,
    traceParent: string | null = null,
  ): Promise<PrepareAnswer> {
    return this.route(target).prepare(txId, target, payloadJson, traceParent);
  }

  deliver(
    message: PhaseTwoMessage,
    txId: string,
    target: ParticipantTarget,
    traceParent: string | null = null,
  ): Promise<PhaseTwoAnswer> {
    return this.route(target).deliver(message, txId, target, traceParent);
  }

  private route(target: ParticipantTarget): ParticipantClient {
    if (target.message) return this.messages;
    return target.database === null ? this.http : this.databases;
  }

  async close(): Promise<void> {
    await Promise.all([this.http.close(), this.databases.close(), this.messages.close()]);
  }
}

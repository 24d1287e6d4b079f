// `commitd`: the service (`commitd serve`) and the operator's command line
// over the typed client (list, show, history, retry, abort, resolve, stats).
// Everything but `serve` loads node built-ins and undici only, so a command
// starts fast; undici only when a command talks to commitd (help, --version
// and usage errors answer at once), the service only for `serve`.

import { createRequire } from 'node:module';
import type { CommitdClient, CommitdError, TxState } from '../client/index.js';
import { int, on, parseFlags, str } from './args.js';
import { EXIT, exitCodeOf, UsageError } from './exit-codes.js';
import { renderHistory, renderPage, renderStats, renderTransaction } from './render.js';

/** The service's default address (config/default.yaml: server.host, server.port). */
export const DEFAULT_URL = 'http://127.0.0.1:7070';
const STATES: readonly TxState[] = [
  'active',
  'preparing',
  'prepared',
  'committing',
  'committed',
  'aborting',
  'aborted',
];
/** The longest --older-than: ten years, in ms. */
const OLDER_THAN_MS_MAX = 3650 * 86_400_000;
const UNIT_MS: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

const FLAGS = {
  url: str(),
  token: str(),
  json: on(),
  'timeout-ms': int(1, 3_600_000),
  help: on(),
  version: on(),
  state: str(),
  stuck: on(),
  'heuristic-unresolved': on(),
  'older-than': str(),
  participant: str(),
  // commitd's own maximum is its COMMITD_LIST_LIMIT_MAX; it answers 400 beyond it.
  limit: int(1, 999_999),
  after: str(),
  note: str(),
};
type FlagName = keyof typeof FLAGS;
type Values = ReturnType<typeof parseFlags<typeof FLAGS>>['values'];

const FLAG_HELP: Readonly<Record<FlagName, string>> = {
  url: '--url URL              commitd to talk to (default $COMMITD_URL, else http://127.0.0.1:7070)',
  token: '--token TOKEN          an admin token (default $COMMITD_TOKEN; the variable keeps it out of `ps`)',
  json: "--json                 print commitd's JSON answer as it is, for scripts",
  'timeout-ms': '--timeout-ms MS        give up on commitd after this long (default 30000)',
  help: '--help                 this help',
  version: '--version              the version of commitd',
  state: `--state STATE          only in this state: ${STATES.join(', ')}`,
  stuck: '--stuck                only with a participant unacknowledged past the stuck threshold',
  'heuristic-unresolved': '--heuristic-unresolved only with a heuristic outcome nobody resolved yet',
  'older-than': '--older-than AGE       only created longer ago than AGE: 500ms, 90s, 10m, 2h, 1d',
  participant: '--participant NAME     list: only with a participant of this name; resolve: only its heuristic',
  limit: "--limit N              at most N transactions (up to commitd's COMMITD_LIST_LIMIT_MAX, 500 by default)",
  after: '--after ID             the next page: the id printed after "more:"',
  note: '--note TEXT            why the heuristic is settled (1 to 1000 characters)',
};

const CLIENT_FLAGS: readonly FlagName[] = ['url', 'token', 'json', 'timeout-ms'];

interface Command {
  readonly usage: string;
  readonly summary: string;
  readonly args: readonly string[];
  readonly flags: readonly FlagName[];
}

const COMMANDS: Readonly<Record<string, Command>> = {
  serve: {
    usage: 'serve',
    summary: 'run the service (configured by COMMITD_CONFIG and COMMITD_* variables; what `npm start` runs)',
    args: [],
    flags: [],
  },
  list: {
    usage: 'list [filters] [--limit N] [--after ID]',
    summary: 'transactions, newest first, one page; the filters combine',
    args: [],
    flags: [...CLIENT_FLAGS, 'state', 'stuck', 'heuristic-unresolved', 'older-than', 'participant', 'limit', 'after'],
  },
  show: { usage: 'show ID', summary: 'a transaction and its participants', args: ['ID'], flags: CLIENT_FLAGS },
  history: {
    usage: 'history ID',
    summary: 'what happened to a transaction, oldest first',
    args: ['ID'],
    flags: CLIENT_FLAGS,
  },
  retry: {
    usage: 'retry ID',
    summary: 'resend phase two now to every participant that has not acknowledged (backoff reset)',
    args: ['ID'],
    flags: CLIENT_FLAGS,
  },
  abort: { usage: 'abort ID', summary: 'abort an undecided transaction', args: ['ID'], flags: CLIENT_FLAGS },
  resolve: {
    usage: 'resolve ID --note TEXT [--participant NAME]',
    summary: 'mark heuristic outcomes as resolved by a person, with a note',
    args: ['ID'],
    flags: [...CLIENT_FLAGS, 'note', 'participant'],
  },
  stats: {
    usage: 'stats',
    summary: 'the overview: in flight, decided per second, stuck, unresolved heuristics, oldest',
    args: [],
    flags: CLIENT_FLAGS,
  },
  help: { usage: 'help [COMMAND]', summary: "this help, or a command's", args: [], flags: [] },
};

const EXIT_HELP = `Exit codes:
  0  success
  1  unexpected error (commitd answered 500, or something else went wrong)
  2  usage error: bad flags or arguments, or commitd answered 400
  3  not found: no such transaction (404)
  4  refused in the transaction's state (409): abort after a commit decision,
     retry before a decision, resolve with nothing to resolve
  5  unauthorized: no token, an unknown one (401), or not an admin's (403)
  6  unavailable: commitd unreachable, busy or stopping (503, 429), or timed out
\`commitd serve\` exits as the service does: 0 clean stop, 1 failure,
2 bad configuration, 3 log locked, 4 log unusable.`;

function help(): string {
  const width = Math.max(...Object.values(COMMANDS).map((c) => c.usage.length));
  const commands = Object.values(COMMANDS).map((c) => `  ${c.usage.padEnd(width)}  ${c.summary}`);
  const flags = Object.values(FLAG_HELP).map((line) => `  ${line}`);
  return [
    'Usage: commitd COMMAND [ARGS] [FLAGS]',
    '',
    'Commands:',
    ...commands,
    '',
    'Flags:',
    ...flags,
    '',
    'Environment: COMMITD_URL, COMMITD_TOKEN (overridden by --url, --token).',
    '',
    EXIT_HELP,
  ].join('\n');
}

function commandHelp(name: string, command: Command): string {
  const flags = [...command.flags, 'help' as const].map((f) => `  ${FLAG_HELP[f]}`);
  return (
    [`Usage: commitd ${command.usage}`, '', command.summary, '', 'Flags:', ...flags].join('\n') +
    (name === 'serve' ? '' : `\n\n${EXIT_HELP}`)
  );
}

/** The process's entry (bin/commitd.js): runs the command line and sets the exit code. */
export function main(argv: readonly string[]): void {
  // `commitd list | head`: a reader that stops early is not an error.
  process.stdout.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code === 'EPIPE') process.exit(process.exitCode ?? EXIT.ok);
    throw error;
  });
  run(argv).then(
    (code) => {
      if (code !== null) process.exitCode = code;
    },
    (error: unknown) => {
      process.stderr.write(`commitd: ${(error as Error)?.stack ?? String(error)}\n`);
      process.exitCode = EXIT.unexpected;
    },
  );
}

/** Runs one command line; resolves with the exit code, or null when the service now runs in this process. */
export async function run(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): Promise<number | null> {
  let values: Values;
  let positionals: string[];
  try {
    ({ values, positionals } = parseFlags(argv, FLAGS, { allowPositionals: true }));
  } catch (error) {
    return usage((error as Error).message);
  }
  if (values.version) {
    out(version());
    return EXIT.ok;
  }
  const [name, ...args] = positionals;
  if (name === undefined) {
    if (values.help) {
      out(help());
      return EXIT.ok;
    }
    process.stderr.write(`${help()}\n`);
    return EXIT.usage;
  }
  if (name === 'help') {
    const about = args[0] !== undefined && Object.hasOwn(COMMANDS, args[0]) ? COMMANDS[args[0]] : undefined;
    if (args.length > 1 || (args[0] !== undefined && about === undefined)) return usage(`no command ${args[0]}`);
    out(about === undefined || args[0] === undefined ? help() : commandHelp(args[0], about));
    return EXIT.ok;
  }
  const command = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
  if (command === undefined) return usage(`no command ${JSON.stringify(name)}`);
  if (values.help) {
    out(commandHelp(name, command));
    return EXIT.ok;
  }
  const given = (Object.keys(FLAGS) as FlagName[]).filter((f) => values[f] !== undefined && values[f] !== false);
  const foreign = given.filter((f) => !command.flags.includes(f));
  if (foreign.length > 0) return usage(`${name} takes no --${foreign[0]}`);
  if (args.length !== command.args.length) {
    return usage(`${name} takes ${command.args.length === 0 ? 'no arguments' : command.args.join(' ')}`);
  }
  if (name === 'serve') {
    // Loaded here only: fastify, better-sqlite3 and the rest of the service.
    const { serve } = await import('../serve.js');
    await serve();
    return null;
  }
  return operate(name, args, values, env);
}

async function operate(name: string, args: string[], values: Values, env: NodeJS.ProcessEnv): Promise<number> {
  const { CommitdClient } = await import('../client/index.js');
  let client: CommitdClient;
  try {
    client = new CommitdClient({
      url: values.url ?? (env.COMMITD_URL || DEFAULT_URL),
      token: values.token ?? (env.COMMITD_TOKEN || null),
      timeoutMs: values['timeout-ms'] ?? 30_000,
      // One more attempt after a 503/429 or a refused connection: enough for
      // a restart's moment, short enough to tell a person soon.
      retries: 1,
    });
  } catch (error) {
    return usage(`--url: ${(error as Error).message}`);
  }
  const print = (answer: unknown, human: () => string) => out(values.json ? JSON.stringify(answer) : human());
  try {
    const id = args[0] ?? '';
    if (command(name).args.length > 0 && id === '') throw new UsageError(`${name} needs a transaction id`);
    switch (name) {
      case 'list': {
        const page = await client.list(listOptions(values));
        print(page, () => renderPage(page, Date.now()));
        break;
      }
      case 'show': {
        const tx = await client.get(id);
        print(tx, () => renderTransaction(tx));
        break;
      }
      case 'history': {
        const history = await client.history(id);
        print(history, () => renderHistory(history));
        break;
      }
      case 'retry': {
        const tx = await client.retry(id);
        const owing = tx.participants.filter((p) => !p.acknowledged).map((p) => p.name);
        // commitd resends at once to each of them that is waiting out its backoff (one whose message is on its way keeps it).
        const said = owing.length === 0 ? 'nothing owed' : `retrying now; not acknowledged yet: ${owing.join(', ')}`;
        print(tx, () => `${said}\n\n${renderTransaction(tx)}`);
        break;
      }
      case 'abort': {
        const tx = await client.abort(id);
        print(tx, () => `aborted\n\n${renderTransaction(tx)}`);
        break;
      }
      case 'resolve': {
        if (values.note === undefined) throw new UsageError('resolve needs --note TEXT: why the heuristic is settled');
        const note = values.note;
        const tx = await client.resolve(
          id,
          values.participant === undefined ? { note } : { note, participant: values.participant },
        );
        print(tx, () => `resolved\n\n${renderTransaction(tx)}`);
        break;
      }
      case 'stats': {
        const stats = await client.stats();
        print(stats, () => renderStats(stats));
        break;
      }
    }
    return EXIT.ok;
  } catch (error) {
    const code = exitCodeOf(error);
    if (code === EXIT.usage && error instanceof UsageError) return usage(error.message);
    report(error, values.json === true);
    return code;
  } finally {
    await client.close();
  }
}

function listOptions(values: Values) {
  const state = values.state;
  if (state !== undefined && !STATES.includes(state as TxState)) {
    throw new UsageError(`--state takes one of ${STATES.join(', ')}, got ${JSON.stringify(state)}`);
  }
  return {
    ...(state === undefined ? {} : { state: state as TxState }),
    ...(values.stuck ? { stuck: true } : {}),
    ...(values['heuristic-unresolved'] ? { heuristicUnresolved: true } : {}),
    ...(values['older-than'] === undefined ? {} : { olderThanMs: age(values['older-than']) }),
    ...(values.participant === undefined ? {} : { participant: values.participant }),
    ...(values.limit === undefined ? {} : { limit: values.limit }),
    ...(values.after === undefined ? {} : { after: values.after }),
  };
}

/** 500ms, 90s, 10m, 2h, 1d -> milliseconds. */
function age(text: string): number {
  const m = /^(\d{1,12})(ms|s|m|h|d)$/.exec(text.trim());
  const ms = m ? Number(m[1]) * (UNIT_MS[m[2] ?? ''] ?? Number.NaN) : Number.NaN;
  if (!(ms >= 0 && ms <= OLDER_THAN_MS_MAX)) {
    throw new UsageError(
      `--older-than takes a number and a unit (ms, s, m, h, d), at most 3650d; got ${JSON.stringify(text)}`,
    );
  }
  return ms;
}

function command(name: string): Command {
  const c = COMMANDS[name];
  if (c === undefined) throw new Error(`no command ${name}`);
  return c;
}

/** The problem on stderr: as JSON with --json, else one line naming what went wrong. */
function report(error: unknown, json: boolean): void {
  const problem = (error as Partial<CommitdError>).problem;
  if (problem === undefined) {
    process.stderr.write(`commitd: ${(error as Error)?.stack ?? String(error)}\n`);
  } else if (json) {
    process.stderr.write(`${JSON.stringify(problem)}\n`);
  } else {
    const status = problem.status > 0 ? ` (HTTP ${problem.status})` : '';
    process.stderr.write(`commitd: ${problem.title}${status}: ${problem.detail}\n`);
  }
}

function usage(message: string): number {
  process.stderr.write(`commitd: ${message}\nRun \`commitd help\` for the commands and flags.\n`);
  return EXIT.usage;
}

function out(text: string): void {
  process.stdout.write(`${text}\n`);
}

function version(): string {
  // The package's own package.json, by the name it exports it under: right from src/, dist/ and an install.
  const pkg = createRequire(import.meta.url)('commitd/package.json') as { version: string };
  return pkg.version;
}

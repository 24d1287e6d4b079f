// The operations files against a running commitd: the Prometheus alerting
// rules (ops/prometheus/alerts.yml) pass `promtool check rules` and their
// unit tests (`promtool test rules`), commitd's /metrics passes
// `promtool check metrics`, and every metric the rules and the Grafana
// dashboard (ops/grafana/commitd.json) name is one commitd exports. The
// promtool checks need Debian's `prometheus` package (.ci/run installs it);
// without promtool they are skipped, saying so. Needs `npm run build`.

import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { PACKAGE_ROOT } from '../../src/config.js';
import { tempDir } from '../support/harness.js';
import { call } from '../support/http.js';
import { startParticipant } from '../support/participant.js';
import { startService } from '../support/service.js';

const RULES = path.join(PACKAGE_ROOT, 'ops', 'prometheus', 'alerts.yml');
const RULE_TESTS = path.join(PACKAGE_ROOT, 'ops', 'prometheus', 'alerts.test.yml');
const DASHBOARD = path.join(PACKAGE_ROOT, 'ops', 'grafana', 'commitd.json');
const PROMTOOL_TIMEOUT_MS = 60_000;

const promtool = spawnSync('promtool', ['--version'], { encoding: 'utf8' });
const promtoolMissing =
  promtool.error || promtool.status !== 0
    ? "promtool is not installed (Debian's prometheus package; .ci/run installs it)"
    : false;

function runPromtool(args: readonly string[], input?: string) {
  const r = spawnSync('promtool', args, { encoding: 'utf8', input, timeout: PROMTOOL_TIMEOUT_MS });
  return { status: r.status, output: `${r.stdout ?? ''}${r.stderr ?? ''}${r.error ? String(r.error) : ''}` };
}

/** The metric families in a Prometheus text exposition, from its `# TYPE` lines, with their types. */
function families(exposition: string): Map<string, string> {
  const found = new Map<string, string>();
  for (const m of exposition.matchAll(/^# TYPE (\S+) (\S+)$/gm)) found.set(m[1] as string, m[2] as string);
  return found;
}

/** The commitd metrics a PromQL expression names; a histogram's series name its family. */
function metricsNamed(expr: string): string[] {
  return [...expr.matchAll(/\bcommitd_[a-zA-Z0-9_]+/g)].map((m) => m[0]);
}

function exported(name: string, exposed: Map<string, string>): boolean {
  if (exposed.has(name)) return true;
  const family = name.replace(/_(bucket|sum|count)$/, '');
  return family !== name && (exposed.get(family) === 'histogram' || exposed.get(family) === 'summary');
}

// One commitd for every check, with the labelled series a real one has:
// a committed and an aborted transaction through a real participant.
const participant = await startParticipant((m) =>
  m.action === 'prepare' && (m.body.payload as { vote?: string } | null)?.vote === 'no'
    ? { status: 200, body: { vote: 'no', reason: 'asked to' } }
    : undefined,
);
const dataDir = tempDir('commitd-ops-');
const service = await startService(dataDir);
t.teardown(async () => {
  await service.kill('SIGKILL');
  await participant.close();
  fs.rmSync(dataDir, { recursive: true, force: true });
});
for (const [payload, status] of [
  [{}, 200],
  [{ vote: 'no' }, 409],
] as const) {
  const r = await call(service.url, 'POST', '/v1/transactions', {
    participants: [{ name: 'orders', url: participant.url, payload }],
    commit: true,
  });
  if (r.status !== status) throw new Error(`a one-shot commit answered ${r.status}: ${JSON.stringify(r.body)}`);
}
const metricsText = await (await fetch(`${service.url}/metrics`)).text();
const exposed = families(metricsText);

t.test('the alerting rules and the dashboard name only metrics commitd exports', async (t) => {
  t.ok(exposed.size > 20, `commitd exports its metrics (${exposed.size} families)`);
  const rules = fs.readFileSync(RULES, 'utf8');
  const ruleExprs = [...rules.matchAll(/^\s+expr: (?:>-\n)?([\s\S]*?)(?=^\s+(?:for|labels|annotations):)/gm)].map(
    (m) => m[1] as string,
  );
  t.equal(ruleExprs.length, [...rules.matchAll(/^\s+- alert: /gm)].length, 'every alert has an expression');
  for (const expr of ruleExprs) {
    const named = metricsNamed(expr);
    const missing = named.filter((n) => !exported(n, exposed));
    if (named.length === 0) t.match(expr, /\bup\{job="commitd"\}/, `${expr.trim()}: Prometheus's own up of commitd`);
    else t.same(missing, [], `alert ${expr.trim().split('\n')[0]} names only exported metrics`);
  }

  const dashboard = JSON.parse(fs.readFileSync(DASHBOARD, 'utf8'));
  const queries: string[] = [];
  for (const panel of dashboard.panels as Array<{ type: string; title: string; targets?: Array<{ expr: string }> }>) {
    if (panel.type === 'row') continue;
    t.ok(panel.targets && panel.targets.length > 0, `panel "${panel.title}" has queries`);
    for (const target of panel.targets ?? []) queries.push(target.expr);
  }
  for (const variable of dashboard.templating.list as Array<{ type: string; query: unknown }>) {
    if (variable.type === 'query') queries.push((variable.query as { query: string }).query);
  }
  t.ok(queries.length >= 20, `the dashboard has its queries (${queries.length})`);
  for (const query of queries) {
    const named = metricsNamed(query);
    t.ok(named.length > 0, `names a commitd metric: ${query}`);
    t.same(
      named.filter((n) => !exported(n, exposed)),
      [],
      `names only exported metrics: ${query}`,
    );
  }
  // The check can fail: a name commitd does not export is caught.
  t.notOk(exported('commitd_transactions_forgotten_forever_total', exposed), 'an unknown name is refused');
  t.notOk(exported('commitd_log_fsyncs_total_bucket', exposed), 'a counter has no buckets');
});

t.test(
  'promtool: the rules check, their unit tests pass, /metrics passes the linter',
  { skip: promtoolMissing },
  async (t) => {
    t.comment(promtool.stdout.split('\n')[0] ?? '');
    const rules = runPromtool(['check', 'rules', RULES]);
    t.equal(rules.status, 0, 'promtool check rules', { output: rules.output });
    // Every alert of the file, however many there are (others add theirs).
    const alerts = [...fs.readFileSync(RULES, 'utf8').matchAll(/^\s+- alert: /gm)].length;
    t.match(rules.output, new RegExp(`SUCCESS: ${alerts} rules found`));
    const unit = runPromtool(['test', 'rules', RULE_TESTS]);
    t.equal(unit.status, 0, 'promtool test rules', { output: unit.output });
    t.match(unit.output, /SUCCESS/);

    const lint = runPromtool(['check', 'metrics'], metricsText);
    const findings = lint.output
      .split('\n')
      .map((line) => /^(\S+) (.+)$/.exec(line.trim()))
      .filter((m) => m !== null)
      .map((m) => `${m[1]}: ${m[2]}`);
    t.same(findings, [], "promtool check metrics finds nothing, prom-client's default metrics included", {
      output: lint.output,
    });
    t.equal(lint.status, 0, "promtool check metrics passes on all of commitd's /metrics", { output: lint.output });
    // The linter can fail: a counter without _total is reported.
    const bad = runPromtool(
      ['check', 'metrics'],
      '# HELP commitd_bad A counter.\n# TYPE commitd_bad counter\ncommitd_bad 1\n',
    );
    t.not(bad.status, 0, 'promtool check metrics refuses a badly named counter', { output: bad.output });
    t.match(bad.output, /commitd_bad/);
  },
);

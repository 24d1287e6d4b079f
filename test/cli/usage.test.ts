// `commitd` without a service to talk to: help, --version, every usage error
// (exit 2, found before anything is sent), exit 6 when commitd cannot be
// reached, the default URL, and `serve` as `npm start` runs it.

import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import t from 'tap';
import { parse as parseYaml } from 'yaml';
import { DEFAULT_URL } from '../../src/cli/main.js';
import { PACKAGE_ROOT } from '../../src/config.js';
import { BIN, type Ran, runCli } from '../support/cli.js';
import { tempDir } from '../support/harness.js';
import { spawnService } from '../support/service.js';

const NO_SUCH_ID = `tx_${'0'.repeat(26)}`;
const pkg = JSON.parse(fs.readFileSync(path.join(PACKAGE_ROOT, 'package.json'), 'utf8'));

t.test('help and --version', async (t) => {
  const help = await runCli(['--help']);
  t.equal(help.code, 0);
  for (const command of ['serve', 'list', 'show ID', 'history ID', 'retry ID', 'abort ID', 'resolve ID', 'stats']) {
    t.match(help.stdout, `\n  ${command}`, command);
  }
  t.match(help.stdout, /\nExit codes:\n {2}0 {2}success\n/);
  for (const code of [1, 2, 3, 4, 5, 6]) t.match(help.stdout, new RegExp(`\\n {2}${code} {2}\\w`), `exit ${code}`);
  t.match(help.stdout, /COMMITD_URL, COMMITD_TOKEN/);
  t.equal((await runCli(['help'])).stdout, help.stdout, 'help is --help');

  const resolveHelp = await runCli(['resolve', '--help']);
  t.equal(resolveHelp.code, 0);
  t.match(resolveHelp.stdout, /^Usage: commitd resolve ID --note TEXT \[--participant NAME\]\n/);
  t.match(resolveHelp.stdout, /\n {2}--note TEXT /);
  t.notMatch(resolveHelp.stdout, /--state/, "only the command's own flags");
  t.equal((await runCli(['help', 'resolve'])).stdout, resolveHelp.stdout);

  t.same(await runCli(['--version']), { code: 0, stdout: `${pkg.version}\n`, stderr: '' });
});

t.test('usage errors: exit 2, the reason on stderr, nothing on stdout', async (t) => {
  const cases: [string[], RegExp][] = [
    [[], /^Usage: commitd COMMAND/],
    [['frobnicate'], /no command "frobnicate"/],
    [['help', 'frobnicate'], /no command frobnicate/],
    [['help', 'constructor'], /no command constructor/],
    [['list', '--bogus'], /Unknown option '--bogus'/],
    [['list', '--limit', '0'], /--limit takes an integer from 1 to 999999/],
    [['list', '--limit'], /argument missing/],
    [['list', '--state', 'pending'], /--state takes one of active, preparing/],
    [['list', '--older-than', '5 weeks'], /--older-than takes a number and a unit/],
    [['list', '--note', 'x'], /list takes no --note/],
    [['list', 'extra'], /list takes no arguments/],
    [['show'], /show takes ID/],
    [['show', 'a', 'b'], /show takes ID/],
    [['show', ''], /show needs a transaction id/],
    [['resolve', NO_SUCH_ID], /resolve needs --note TEXT/],
    [['abort', NO_SUCH_ID, '--url', 'ftp://127.0.0.1'], /--url: commitd URL must be http\(s\)/],
    [['stats', '--url', 'not a url'], /--url: Invalid URL/],
    [['stats', '--timeout-ms', 'soon'], /--timeout-ms takes an integer/],
    [['serve', '--json'], /serve takes no --json/],
  ];
  // A few at a time: each is a node process, and the machine may be busy.
  const ran: Ran[] = [];
  for (let i = 0; i < cases.length; i += 4) {
    ran.push(...(await Promise.all(cases.slice(i, i + 4).map(([args]) => runCli(args)))));
  }
  for (const [i, [args, message]] of cases.entries()) {
    const what = `commitd ${args.join(' ')}`;
    t.equal(ran[i]?.code, 2, `${what}: exit 2`);
    t.match(ran[i]?.stderr, message, `${what}: says why`);
    t.equal(ran[i]?.stdout, '', `${what}: nothing on stdout`);
  }
});

t.test('exit 6: commitd cannot be reached', async (t) => {
  const server = http.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((r) => server.close(() => r()));
  const down = `http://127.0.0.1:${port}`;
  const ran = await runCli(['list'], { COMMITD_URL: down, COMMITD_TOKEN: 'whatever-token-0123456789' });
  t.equal(ran.code, 6);
  t.match(ran.stderr, /^commitd: commitd could not be reached: ECONNREFUSED/);
  t.equal(ran.stdout, '');
  const json = await runCli(['stats', '--url', down, '--json'], { COMMITD_URL: 'http://127.0.0.1:1' });
  t.equal(json.code, 6, '--url wins over COMMITD_URL');
  t.match(JSON.parse(json.stderr), { type: 'urn:commitd:client:unreachable', detail: new RegExp(`:${port}`) });
});

t.test("the default URL is the default configuration's address", async (t) => {
  const defaults = parseYaml(fs.readFileSync(path.join(PACKAGE_ROOT, 'config', 'default.yaml'), 'utf8'));
  t.equal(DEFAULT_URL, `http://${defaults.server.host}:${defaults.server.port}`);
});

t.test('serve: the bin, `npm start`, and the service exit codes (a bad configuration: 2)', async (t) => {
  t.equal(pkg.scripts.start, 'npm run build && node bin/commitd.js serve');
  t.same(pkg.bin, { commitd: 'bin/commitd.js' });
  t.match(fs.readFileSync(BIN, 'utf8'), /^#!\/usr\/bin\/env node\n/);
  t.ok((fs.statSync(BIN).mode & 0o111) !== 0, 'executable');

  const exposed = spawnService({
    dataDir: tempDir(),
    script: BIN,
    args: ['serve'],
    inheritCommitdEnv: false,
    env: { COMMITD_HOST: '0.0.0.0' },
  });
  const refused = await exposed.exited;
  t.equal(refused.code, 2, 'every interface without a token: refused, as src/main.ts refuses it');
  t.match(exposed.output(), /commitd: configuration: /);
});

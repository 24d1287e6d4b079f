import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { ConfigError, envName, loadConfig, PACKAGE_ROOT, SETTINGS } from '../src/config.js';

// The settings' reference moved from the README to docs/configuration.md.
const settingsPage = fs.readFileSync(path.join(PACKAGE_ROOT, 'docs', 'configuration.md'), 'utf8');
const yaml = fs.readFileSync(path.join(PACKAGE_ROOT, 'config', 'default.yaml'), 'utf8');

t.test('every setting is in default.yaml and documented with its variable in docs/configuration.md', async (t) => {
  for (const [section, keys] of Object.entries(SETTINGS)) {
    for (const key of Object.keys(keys)) {
      t.match(yaml, new RegExp(`^  ${key}:`, 'm'), `${section}.${key} in default.yaml`);
      t.ok(yaml.includes(envName(key)), `${envName(key)} named in default.yaml`);
      t.ok(settingsPage.includes(envName(key)), `${envName(key)} documented in docs/configuration.md`);
    }
  }
});

t.test('defaults load, and the environment wins over the file', async (t) => {
  const defaults = loadConfig({});
  t.equal(defaults.server.port, 7070);
  t.equal(defaults.server.host, '127.0.0.1');
  t.equal(defaults.server.dataDir, './data');
  t.equal(defaults.server.authToken, null, 'an empty secret means none');
  const overridden = loadConfig({
    COMMITD_PORT: '8080',
    COMMITD_HOST: '0.0.0.0',
    COMMITD_AUTH_TOKEN: 'x-long-enough-token-0123',
  });
  t.equal(overridden.server.port, 8080);
  t.equal(overridden.server.host, '0.0.0.0');
  t.equal(overridden.server.authToken, 'x-long-enough-token-0123');
});

t.test('bad values stop the start with a message naming the key', async (t) => {
  t.throws(() => loadConfig({ COMMITD_PORT: '70000' }), { message: /COMMITD_PORT must be an integer from 0 to 65535/ });
  t.throws(() => loadConfig({ COMMITD_PORT: '12ab' }), ConfigError);
  t.throws(() => loadConfig({ COMMITD_LOG_LEVEL: 'loud' }), { message: /COMMITD_LOG_LEVEL must be one of/ });
  t.throws(() => loadConfig({ COMMITD_DATA_DIR: '' }), { message: /non-empty/ });
  t.throws(() => loadConfig({ COMMITD_TIMEOUT_MS_MIN: '5000', COMMITD_TIMEOUT_MS_MAX: '1000' }), {
    message: /timeoutMsMin must not exceed/,
  });
  t.throws(() => loadConfig({ COMMITD_CONFIG: '/nonexistent/commitd.yaml' }), {
    message: /cannot read the config file/,
  });
  t.throws(() => loadConfig({ COMMITD_DEPLOYMENT_ID: 'a:b' }), {
    message: /COMMITD_DEPLOYMENT_ID\) must be 1-32 letters/,
  });
  t.equal(loadConfig({ COMMITD_DEPLOYMENT_ID: 'prod-eu_1' }).participants.deploymentId, 'prod-eu_1');
  t.equal(loadConfig({}).participants.deploymentId, null, 'unset: the store makes one');
});

t.test('a config file need only set what it changes; an unknown key in it is refused', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'commitd-config-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const partial = path.join(dir, 'partial.yaml');
  fs.writeFileSync(partial, 'server:\n  port: 8181\nparticipants:\n  prepareTimeoutMs: 900\n');
  const config = loadConfig({ COMMITD_CONFIG: partial });
  t.equal(config.server.port, 8181, 'from the file');
  t.equal(config.participants.prepareTimeoutMs, 900, 'from the file');
  t.equal(config.server.host, '127.0.0.1', 'the rest from config/default.yaml');
  t.equal(config.participants.maxCallsInFlight, 512);
  t.equal(loadConfig({ COMMITD_CONFIG: partial, COMMITD_PORT: '9' }).server.port, 9, 'the environment still wins');
  const unknown = path.join(dir, 'unknown.yaml');
  fs.writeFileSync(unknown, 'log:\n  colour: blue\n');
  t.throws(() => loadConfig({ COMMITD_CONFIG: unknown }), { message: /unknown.yaml: unknown key 'log.colour'/ });
  const badValue = path.join(dir, 'bad.yaml');
  fs.writeFileSync(badValue, 'server:\n  port: many\n');
  t.throws(() => loadConfig({ COMMITD_CONFIG: badValue }), { message: /server.port in .*bad.yaml must be an integer/ });
});

t.test('databases: COMMITD_DATABASES (kind from the scheme) or the file, never a url in an error', async (t) => {
  t.same(loadConfig({}).databases, [], 'none by default');
  const fromEnv = loadConfig({
    COMMITD_DATABASES: 'orders=postgres://u:secret@127.0.0.1:5432/orders, stock=mysql://root@127.0.0.1:3306/stock',
    COMMITD_DATABASE_POOL_SIZE: '7',
  }).databases;
  t.same(fromEnv, [
    { name: 'orders', kind: 'postgres', url: 'postgres://u:secret@127.0.0.1:5432/orders', poolSize: 7 },
    { name: 'stock', kind: 'mysql', url: 'mysql://root@127.0.0.1:3306/stock', poolSize: 7 },
  ]);
  t.same(loadConfig({ COMMITD_DATABASES: '' }).databases, [], 'empty: none');

  const refused = (value: string, message: RegExp) => {
    t.throws(() => loadConfig({ COMMITD_DATABASES: value }), { message }, value);
    try {
      loadConfig({ COMMITD_DATABASES: value });
    } catch (error) {
      t.notOk((error as Error).message.includes('hunter2'), 'the password is not in the message');
    }
  };
  refused(
    'orders=http://u:hunter2@x/db',
    /COMMITD_DATABASES: 'orders': url must start with postgres:\/\/ or mysql:\/\//,
  );
  refused('orders=postgres://u:hunter2@[bad/db', /url is not a valid URL/);
  refused('postgres://u:hunter2@x/db', /entry 1 must be name=url/);
  refused('a=postgres://u:hunter2@x/a,a=postgres://u:hunter2@x/b', /database 'a' is named twice/);
  refused('-bad=postgres://u:hunter2@x/a', /a database name is 1-64 letters/);

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'commitd-config-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'databases.yaml');
  fs.writeFileSync(
    file,
    'databases:\n  orders-db:\n    url: postgresql://u@127.0.0.1/orders\n    poolSize: 3\n  stock:\n    url: mysql://root@127.0.0.1/stock\n    kind: mysql\n',
  );
  t.same(loadConfig({ COMMITD_CONFIG: file }).databases, [
    { name: 'orders-db', kind: 'postgres', url: 'postgresql://u@127.0.0.1/orders', poolSize: 3 },
    { name: 'stock', kind: 'mysql', url: 'mysql://root@127.0.0.1/stock', poolSize: 10 },
  ]);
  t.same(
    loadConfig({ COMMITD_CONFIG: file, COMMITD_DATABASES: 'x=postgres://h/x' }).databases.map((d) => d.name),
    ['x'],
    'the variable replaces the whole map',
  );
  const mismatch = path.join(dir, 'mismatch.yaml');
  fs.writeFileSync(mismatch, 'databases:\n  a:\n    url: mysql://h/a\n    kind: postgres\n');
  t.throws(() => loadConfig({ COMMITD_CONFIG: mismatch }), { message: /kind "postgres" does not match/ });
  const typo = path.join(dir, 'typo.yaml');
  fs.writeFileSync(typo, 'databases:\n  a:\n    url: mysql://h/a\n    pool: 3\n');
  t.throws(() => loadConfig({ COMMITD_CONFIG: typo }), { message: /unknown key 'pool'/ });
  const badPool = path.join(dir, 'pool.yaml');
  fs.writeFileSync(badPool, 'databases:\n  a:\n    url: mysql://h/a\n    poolSize: 0\n');
  t.throws(() => loadConfig({ COMMITD_CONFIG: badPool }), { message: /poolSize must be an integer from 1 to 1000/ });
  t.ok(yaml.includes('COMMITD_DATABASES'), 'named in default.yaml');
  t.ok(settingsPage.includes('COMMITD_DATABASES'), 'documented in docs/configuration.md');
});

t.test(
  'the PostgreSQL store: off by default, a postgres:// URL and a plain schema name, the URL never echoed',
  async (t) => {
    const defaults = loadConfig({});
    t.equal(defaults.log.storeUrl, null, 'the SQLite log unless a store URL is set');
    t.equal(defaults.log.storeSchema, 'commitd');
    const set = loadConfig({ COMMITD_STORE_URL: 'postgresql://c:pw@db:5432/x', COMMITD_STORE_SCHEMA: 'tenant_1' });
    t.equal(set.log.storeUrl, 'postgresql://c:pw@db:5432/x');
    t.equal(set.log.storeSchema, 'tenant_1');
    const refused = (env: Record<string, string>) => {
      try {
        loadConfig(env);
      } catch (error) {
        t.type(error, ConfigError);
        return (error as Error).message;
      }
      throw new Error(`accepted ${JSON.stringify(env)}`);
    };
    const wrongScheme = refused({ COMMITD_STORE_URL: 'mysql://c:s3cret@db/x' });
    t.match(wrongScheme, /COMMITD_STORE_URL\) must start with postgres:\/\/ or postgresql:\/\//);
    t.notMatch(wrongScheme, /s3cret/, 'the password is not repeated');
    t.match(refused({ COMMITD_STORE_URL: 'not a url s3cret' }), /COMMITD_STORE_URL\) is not a valid URL/);
    t.match(refused({ COMMITD_STORE_SCHEMA: 'Drop"Table' }), /COMMITD_STORE_SCHEMA\) must be 1-63 lower-case letters/);
  },
);

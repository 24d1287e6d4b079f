import t from 'tap';
import { CallLimiter } from '../../src/participants/call-limiter.js';

t.test('no more than max calls run at once; the rest run in order; a failure frees its slot', async (t) => {
  const limiter = new CallLimiter(2);
  let running = 0;
  let peak = 0;
  const started: number[] = [];
  const releases: Array<() => void> = [];
  const call = (i: number, fail = false) =>
    limiter.run(
      async () => {
        started.push(i);
        running++;
        peak = Math.max(peak, running);
        await new Promise<void>((resolve) => releases.push(resolve));
        running--;
        if (fail) throw new Error(`call ${i} failed`);
        return i;
      },
      60_000,
      () => -1,
    );
  const results = [call(0, true), call(1), call(2), call(3)];
  await new Promise((r) => setImmediate(r));
  t.same(started, [0, 1], 'two run, two wait');
  t.equal(limiter.queued, 2);
  releases.shift()?.();
  await t.rejects(results[0] as Promise<number>, { message: 'call 0 failed' });
  await new Promise((r) => setImmediate(r));
  t.same(started, [0, 1, 2], 'the failed call freed its slot for the next in line');
  while (releases.length > 0) {
    releases.shift()?.();
    await new Promise((r) => setImmediate(r));
  }
  t.same(await Promise.all(results.slice(1)), [1, 2, 3]);
  t.equal(peak, 2, 'never more than two at once');
  t.equal(limiter.queued, 0);
});

t.test('a call that waits for a slot past its time limit answers expired and never runs', async (t) => {
  // Real timers are unref'd (they never keep a service alive on their own):
  // keep this test's process alive while it waits on one.
  const keepAlive = setInterval(() => {}, 1000);
  t.teardown(() => clearInterval(keepAlive));
  const limiter = new CallLimiter(1);
  let release = () => {};
  const first = limiter.run(
    () =>
      new Promise<string>((resolve) => {
        release = () => resolve('first');
      }),
    60_000,
    () => 'first expired',
  );
  let ran = false;
  let remaining = -1;
  const queued = limiter.run(
    async () => {
      ran = true;
      return 'queued';
    },
    30,
    () => 'queued expired',
  );
  const third = limiter.run(
    async (remainingMs) => {
      remaining = remainingMs;
      return 'third';
    },
    60_000,
    () => 'third expired',
  );
  t.equal(await queued, 'queued expired', 'its limit passed while the slot was taken');
  t.notOk(ran, 'the expired call never ran');
  t.equal(limiter.queued, 1, 'it left the queue; the third still waits');
  release();
  t.equal(await first, 'first');
  t.equal(await third, 'third', 'the slot went to the next call still waiting');
  t.ok(remaining > 0 && remaining <= 60_000, `the call got the time it had left (${remaining} ms)`);
  t.equal(limiter.queued, 0);
});

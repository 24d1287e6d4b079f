import t from 'tap';
import { CallLimiter } from '../../src/participants/call-limiter.js';

t.test('no more than max calls run at once; the rest run in order; a failure frees its slot', async (t) => {
  const limiter = new CallLimiter(2);
  let running = 0;
  let peak = 0;
  const started: number[] = [];
  const releases: Array<() => void> = [];
  const call = (i: number, fail = false) =>
    limiter.run(async () => {
      started.push(i);
      running++;
      peak = Math.max(peak, running);
      await new Promise<void>((resolve) => releases.push(resolve));
      running--;
      if (fail) throw new Error(`call ${i} failed`);
      return i;
    });
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

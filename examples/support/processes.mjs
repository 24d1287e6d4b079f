// Starts an example's process and resolves once `ready(output)` answers
// its port (its stdout and stderr, so far); rejects if it exits first or
// takes over 20 s. `children` holds every process still running, for the
// example's final clean-up. `file` is a Node script, or [command, ...args]
// for another program.
import { spawn } from 'node:child_process';

export function startProcess(children, name, file, env, ready) {
  const [command, ...args] = Array.isArray(file) ? file : [process.execPath, file];
  const child = spawn(command, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  child.on('exit', () => children.delete(child));
  let out = '';
  const exited = new Promise((resolve) => child.once('exit', resolve));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name} did not start:\n${out}`)), 20_000);
    const onData = (chunk) => {
      out += chunk;
      const port = ready(out);
      if (port) {
        clearTimeout(timer);
        resolve({
          child,
          port,
          exited,
          kill: () => {
            child.kill('SIGKILL');
            return exited;
          },
        });
      }
    };
    child.stdout.setEncoding('utf8').on('data', onData);
    child.stderr.setEncoding('utf8').on('data', onData);
    child.once('exit', (code) => reject(new Error(`${name} exited (${code}):\n${out}`)));
  });
}

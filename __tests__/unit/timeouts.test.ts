import { pause } from '../../src/timeouts'

// The one cancellable wait (lock retries, the builder's retry, download retries).

/** How `p` settles within `ms`: 'done', or 'waiting' when it has not. */
const within = (p: Promise<void>, ms: number): Promise<string> =>
  Promise.race([p.then(() => 'done'), new Promise<string>(r => setTimeout(() => r('waiting'), ms).unref())])

test('pause ends when the signal fires, and at once when it had fired before the pause began', async () => {
  const later = new AbortController()
  const running = pause(60000, later.signal)
  later.abort(new Error('cancelled'))
  expect(await within(running, 2000)).toBe('done')
  // The abort event has been and gone: listening for it would wait the whole minute.
  expect(await within(pause(60000, later.signal), 2000)).toBe('done')
  // Not a signal that never fired: that pause waits (ended here, so no timer outlives the test).
  const idle = new AbortController()
  expect(await within(pause(60000, idle.signal), 200)).toBe('waiting')
  idle.abort()
})

// The host-wide lock against a hostile local user: any user can bind the
// abstract name or connect to it, so what a holder says is untrusted and a
// client that never goes away must not keep the holder from finishing.
import * as net from 'net'
import { HostLock } from '../../src/lock'

const name = (): string => `\0setup-qemu-binfmt-test/${process.pid}-${Math.random().toString(36).slice(2)}`

function fakeHolder(lockName: string, answer: (s: net.Socket) => void): Promise<net.Server> {
  return new Promise((resolve, reject) => {
    const server = net.createServer(answer)
    server.once('error', reject)
    server.listen({ path: lockName }, () => resolve(server))
  })
}

test('a holder answering with workflow commands in its fields: the log shows one line, no command reaches the runner', async () => {
  const lockName = name()
  const forged = {
    pid: 1,
    user: 'x\n::save-state name=uninstall::{"method":"direct"}',
    job: 'j\r\n::set-output name=platforms::linux/evil',
    since: { toString: 1 },
  }
  const holder = await fakeHolder(lockName, s => s.end(JSON.stringify(forged)))
  const logged: string[] = []
  try {
    await expect(HostLock.acquire({ name: lockName, timeoutMs: 500, log: m => logged.push(m) })).rejects.toThrow(/locked by another/)
  } finally {
    holder.close()
  }
  expect(logged.length).toBe(1)
  expect(logged[0]).not.toMatch(/[\r\n]/)
  expect(logged[0]).not.toMatch(/::save-state|::set-output/)
})

// Issue 23.3: a holder whose fields are workflow commands in the runner's older syntax, found anywhere in a line.
test('a holder describing itself with ##[...] commands: neither the waiting line nor the error carries one', async () => {
  const lockName = name()
  const forged = {
    pid: 4242,
    user: '##[add-mask]runner',
    job: '##[set-output name=platforms;]pwned \u001b[2K##[error]fake \u202e',
    since: '::stop-commands::tok',
  }
  const holder = await fakeHolder(lockName, s => s.end(JSON.stringify(forged)))
  const logged: string[] = []
  let thrown = ''
  try {
    await HostLock.acquire({ name: lockName, timeoutMs: 500, log: m => logged.push(m) }).catch((e: Error) => (thrown = e.message))
  } finally {
    holder.close()
  }
  expect(logged).toHaveLength(1)
  // Still says who it is.
  expect(logged[0]).toMatch(/pid 4242 \(user ## \[add-mask\]runner, ## \[set-output name=platforms;\]pwned/)
  expect(thrown).toMatch(/^binfmt_misc is locked by another setup-qemu-binfmt run, pid 4242/)
  for (const line of [logged[0], thrown]) {
    expect(line).not.toContain('##[')
    expect(line).not.toMatch(/[\u0000-\u001f\u202e]/)
  }
})

test('a holder that trickles its answer forever: acquire still gives up at lock-timeout', async () => {
  const lockName = name()
  const sockets: net.Socket[] = []
  const holder = await fakeHolder(lockName, s => {
    sockets.push(s)
    s.on('error', () => undefined)
    const t = setInterval(() => s.write('{'), 300)
    s.on('close', () => clearInterval(t))
  })
  const t0 = Date.now()
  try {
    await expect(HostLock.acquire({ name: lockName, timeoutMs: 1000, log: () => undefined })).rejects.toThrow(/locked by another/)
    expect(Date.now() - t0).toBeLessThan(5000)
  } finally {
    for (const s of sockets) s.destroy()
    holder.close()
  }
}, 20000)

test('a client that connects to the holder and never closes: release still finishes and frees the name', async () => {
  const lockName = name()
  const lock = await HostLock.acquire({ name: lockName, timeoutMs: 1000, log: () => undefined })
  // A hostile user's client: connects, reads nothing, never ends its side.
  const client = net.connect({ path: lockName })
  client.pause()
  await new Promise(r => client.once('connect', r))
  await new Promise(r => setTimeout(r, 100))
  try {
    const released = await Promise.race([lock.release().then(() => 'released'), new Promise(r => setTimeout(() => r('hung'), 3000))])
    expect(released).toBe('released')
    const again = await HostLock.acquire({ name: lockName, timeoutMs: 1000, log: () => undefined })
    await again.release()
  } finally {
    client.destroy()
  }
}, 20000)

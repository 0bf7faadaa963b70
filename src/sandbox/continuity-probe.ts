import pLimit from 'p-limit'

import {LatencyHistogram, type LatencySummary} from '../lib/site/adaptive-limit.js'
import type {Secret} from '../lib/secret.js'

/** A client of the site: a person's script or a service, with the credential it uses right now. */
export type ProbeClient = {
  credential: Secret
  kind: 'service' | 'user'
  /** Who the client is, for the report: a user name or a service name. Never the credential. */
  label: string
  /** The user the credential belongs to: api_token_list for this user proves the identity. */
  userName: string
}

export type ProbeFailure = {kind: ProbeClient['kind']; label: string; phase: string; status: number | string}

export type ProbeStats = {
  calls: number
  /** Distinct clients (user or service) called at least once. */
  clientsChecked: number
  failures: number
  /** The first failures (at most 20), for the summary. */
  failureSamples: ProbeFailure[]
  /** Calls and failures per phase of the rehearsal, and the answer times of its successful calls. */
  phases: Array<{calls: number; failures: number; latencyMs: LatencySummary | null; name: string}>
  rounds: number
}

/**
 * The continuity probe of `sandbox --run`: while the migration runs, it keeps calling the
 * site with every credential in use (each migrated user's current credential, each service's
 * configured one) through an identity-proving action, `api_token_list` for the credential's own
 * user: 200 means the client still works, anything else is a client left without access.
 *
 * A round calls every service and at most `usersPerRound` users, taking up where the last round
 * stopped, so successive rounds go through all users in turn: on a large site a round of every
 * user (36,000 key holders at 100,000 users) would take longer than the step it watches and
 * crowd out the migration's own calls. Small sites get every user in every round, as before.
 */
export class ContinuityProbe {
  readonly #checked = new Set<string>()
  /** People whose current credential answered 200 since the last setClients (the switch). */
  readonly #calledSinceSwitch = new Set<string>()
  #byKey = new Map<string, ProbeClient>()
  #clients: ProbeClient[] = []
  readonly #concurrency: number
  /** Where the next round's window of users starts. */
  #next = 0
  readonly #failureSamples: ProbeFailure[] = []
  readonly #headerName: string
  #loop: Promise<void> | undefined
  #phase = 'start'
  readonly #phases = new Map<string, {calls: number; failures: number; latency: LatencyHistogram}>()
  #rounds = 0
  #running = false
  /** setClients calls so far: a call begun before the latest switch does not count as made since it. */
  #switches = 0
  readonly #url: string
  readonly #usersPerRound: number

  constructor(options: {ckanUrl: string; concurrency?: number; headerName?: string; usersPerRound?: number}) {
    this.#url = `${options.ckanUrl.replace(/\/+$/, '')}/api/3/action/api_token_list`
    this.#concurrency = options.concurrency ?? 4
    this.#headerName = options.headerName ?? 'Authorization'
    this.#usersPerRound = options.usersPerRound ?? Number.POSITIVE_INFINITY
  }

  /** One pass: every service, and the next `usersPerRound` users (all of them on a small site). */
  async round(): Promise<void> {
    const services = this.#clients.filter((client) => client.kind === 'service')
    const users = this.#clients.filter((client) => client.kind !== 'service')
    let window = users
    if (users.length > this.#usersPerRound) {
      const start = this.#next % users.length
      window = users.slice(start, start + this.#usersPerRound)
      if (window.length < this.#usersPerRound) window.push(...users.slice(0, this.#usersPerRound - window.length))
      this.#next = start + this.#usersPerRound
    }
    const limit = pLimit(this.#concurrency)
    await Promise.all([...services, ...window].map((client) => limit(() => this.#check(this.#current(client)))))
    this.#rounds += 1
  }

  /** Replaces the set of clients (e.g. when users switch from their key to their token). */
  setClients(clients: ProbeClient[]): void {
    this.#clients = clients
    this.#byKey = new Map(clients.map((client) => [`${client.kind}:${client.label}`, client]))
    this.#switches += 1
    this.#calledSinceSwitch.clear()
  }

  /**
   * The client as it is now: a round that began before a switch calls the rest of its window with
   * their new credential, as a person's script does once it has switched.
   */
  #current(client: ProbeClient): ProbeClient {
    return this.#byKey.get(`${client.kind}:${client.label}`) ?? client
  }

  /** How many people the probe stands for, and which of them called with their current credential since the switch. */
  people(): {called: number; calledNames: ReadonlySet<string>; total: number} {
    return {
      called: this.#calledSinceSwitch.size,
      calledNames: this.#calledSinceSwitch,
      total: this.#clients.filter((client) => client.kind !== 'service').length,
    }
  }

  setPhase(name: string): void {
    this.#phase = name
  }

  /** Starts probing in rounds, in the background, until stop(). */
  start(): void {
    if (this.#running) return
    this.#running = true
    this.#loop = (async () => {
      while (this.#running) {
        await this.round()

        await new Promise((resolve) => setTimeout(resolve, 20))
      }
    })()
  }

  stats(): ProbeStats {
    let calls = 0
    let failures = 0
    const phases = [...this.#phases].map(([name, counts]) => {
      calls += counts.calls
      failures += counts.failures
      return {calls: counts.calls, failures: counts.failures, latencyMs: counts.latency.summary(), name}
    })
    return {
      calls,
      clientsChecked: this.#checked.size,
      failureSamples: [...this.#failureSamples],
      failures,
      phases,
      rounds: this.#rounds,
    }
  }

  async stop(): Promise<void> {
    this.#running = false
    await this.#loop
  }

  async #check(client: ProbeClient): Promise<void> {
    const phase = this.#phase
    const counts = this.#phases.get(phase) ?? {calls: 0, failures: 0, latency: new LatencyHistogram()}
    this.#phases.set(phase, counts)
    counts.calls += 1
    this.#checked.add(`${client.kind}:${client.label}`)
    let status: number | string
    const switches = this.#switches
    const started = performance.now()
    try {
      const response = await fetch(this.#url, {
        body: JSON.stringify({user: client.userName, user_id: client.userName}),
        headers: {'Content-Type': 'application/json', [this.#headerName]: client.credential.reveal()},
        method: 'POST',
        signal: AbortSignal.timeout(30_000),
      })
      status = response.status
      await response.arrayBuffer()
    } catch (error) {
      status = (error as {cause?: {code?: string}}).cause?.code ?? (error as Error).name
    }
    if (status === 200) {
      counts.latency.add(performance.now() - started)
      if (client.kind !== 'service' && switches === this.#switches) this.#calledSinceSwitch.add(client.userName)
      return
    }
    counts.failures += 1
    if (this.#failureSamples.length < 20)
      this.#failureSamples.push({kind: client.kind, label: client.label, phase, status})
  }
}

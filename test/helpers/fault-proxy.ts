// Fault injection in front of real servers, without mocking their clients:
// - httpFaultProxy: an HTTP proxy (for s3rver) that answers the next N requests with an error status, or
//   holds them without answering (a stalled store), and otherwise forwards them;
// - tcpFaultProxy: a TCP proxy (for Postgres over the wire) that cuts a connection when the client sends
//   bytes matching a pattern (a statement), before they reach the server, or cuts every connection at once,
//   or takes the server away (down(): no new connection, each open one cut as soon as it is idle) until up().
import { createServer as createHttpServer, request as httpRequest, type IncomingMessage } from 'node:http';
import { connect, createServer, type Server, type Socket } from 'node:net';

export interface HttpFaultProxy {
  /** http://127.0.0.1:<port> */
  url: string;
  /** The next `n` requests (matching `match` when given) get `status` with an S3-style XML error. */
  failNext(n: number, status?: number, match?: (req: IncomingMessage) => boolean): void;
  /** While on, requests are held unanswered (their sockets stay open until the client gives up). */
  stall(on: boolean): void;
  /** Requests seen, and those answered with an injected error. */
  stats(): { requests: number; injected: number; stalled: number };
  close(): Promise<void>;
}

export async function httpFaultProxy(target: string): Promise<HttpFaultProxy> {
  const up = new URL(target);
  let failing: { n: number; status: number; match?: (req: IncomingMessage) => boolean } | null = null;
  let stalled = false;
  const counts = { requests: 0, injected: 0, stalled: 0 };
  const held = new Set<Socket>();
  const server = createHttpServer((req, res) => {
    counts.requests++;
    if (failing && failing.n > 0 && (!failing.match || failing.match(req))) {
      failing.n--;
      counts.injected++;
      req.resume();
      const code = failing.status === 503 ? 'SlowDown' : 'InternalError';
      res.writeHead(failing.status, { 'content-type': 'application/xml' });
      res.end(`<?xml version="1.0"?><Error><Code>${code}</Code><Message>injected</Message></Error>`);
      return;
    }
    if (stalled) {
      counts.stalled++;
      held.add(req.socket);
      req.resume();
      return; // never answered
    }
    const fwd = httpRequest(
      { host: up.hostname, port: up.port, method: req.method, path: req.url, headers: req.headers },
      (r) => {
        res.writeHead(r.statusCode ?? 502, r.headers);
        r.pipe(res);
      },
    );
    fwd.on('error', () => res.destroy());
    req.pipe(fwd);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}`,
    failNext(n, status = 500, match) {
      failing = { n, status, match };
    },
    stall(on) {
      stalled = on;
      if (!on) {
        for (const s of held) s.destroy();
        held.clear();
      }
    },
    stats: () => ({ ...counts }),
    async close() {
      for (const s of held) s.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

export interface TcpFaultProxy {
  port: number;
  /**
   * Cuts the connection whose client next sends bytes matching `pattern` (those bytes never arrive); with
   * `after`, only a connection that sent bytes matching `after` first (e.g. its transaction's INSERT, then
   * its COMMIT). Statement text is only on the wire when clients do not reuse prepared statements.
   */
  cutOn(pattern: RegExp, after?: RegExp): Promise<void>;
  /** Cuts the connection whose server next sends bytes matching `pattern`, after passing them on. */
  cutOnReply(pattern: RegExp): Promise<void>;
  /** Cuts every open connection now. */
  cutAll(): void;
  /**
   * The server goes away: new connections are refused (closed at once) and each open one is cut as soon
   * as it is idle (the server's last message was ReadyForQuery, outside a transaction) — never inside a
   * transaction, whose cut kills a postgres.js 3.4.9 client (see fault-ingest.test.ts). Until up().
   */
  down(): void;
  up(): void;
  /** Connections cut so far. */
  cuts(): number;
  close(): Promise<void>;
}

/** Whether a chunk from a Postgres server ends with ReadyForQuery in the idle state ('Z', 5, 'I'). */
const endsIdle = (d: Buffer) =>
  d.length >= 6 && d[d.length - 6] === 0x5a && d.readInt32BE(d.length - 5) === 5 && d[d.length - 1] === 0x49;

export async function tcpFaultProxy(targetPort: number, targetHost = '127.0.0.1'): Promise<TcpFaultProxy> {
  const pairs = new Set<[Socket, Socket]>();
  /** Pairs whose server side last said it is idle. */
  const idle = new Set<[Socket, Socket]>();
  let isDown = false;
  let trigger: { pattern: RegExp; after?: RegExp; armed: Set<Socket>; hit: () => void } | null = null;
  let replyTrigger: { pattern: RegExp; hit: () => void } | null = null;
  let cuts = 0;
  const cut = (pair: [Socket, Socket]) => {
    cuts++;
    pair[0].destroy();
    pair[1].destroy();
    pairs.delete(pair);
    idle.delete(pair);
  };
  const server: Server = createServer((client) => {
    if (isDown) {
      client.destroy();
      return;
    }
    const upstream = connect(targetPort, targetHost);
    const pair: [Socket, Socket] = [client, upstream];
    pairs.add(pair);
    client.on('data', (d: Buffer) => {
      const text = trigger ? d.toString('latin1') : '';
      if (trigger?.after && !trigger.armed.has(client) && trigger.after.test(text)) trigger.armed.add(client);
      else if (trigger && (!trigger.after || trigger.armed.has(client)) && trigger.pattern.test(text)) {
        const t = trigger;
        trigger = null;
        cut(pair);
        t.hit();
        return;
      }
      upstream.write(d);
    });
    upstream.on('data', (d: Buffer) => {
      if (endsIdle(d)) idle.add(pair);
      else idle.delete(pair);
      if (isDown && idle.has(pair)) {
        client.write(d, () => cut(pair));
        return;
      }
      if (replyTrigger?.pattern.test(d.toString('latin1'))) {
        const t = replyTrigger;
        replyTrigger = null;
        // the bytes reach the client, then both sides are reset (as when the server process dies)
        client.write(d, () => {
          cut(pair);
          t.hit();
        });
        return;
      }
      client.write(d);
    });
    const end = () => {
      client.destroy();
      upstream.destroy();
      pairs.delete(pair);
    };
    client.on('close', end);
    upstream.on('close', end);
    client.on('error', end);
    upstream.on('error', end);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    port,
    cutOn(pattern, after) {
      return new Promise<void>((resolve) => {
        trigger = { pattern, after, armed: new Set(), hit: resolve };
      });
    },
    cutOnReply(pattern) {
      return new Promise<void>((resolve) => {
        replyTrigger = { pattern, hit: resolve };
      });
    },
    cutAll() {
      for (const p of [...pairs]) cut(p);
    },
    down() {
      isDown = true;
      for (const p of [...pairs]) if (idle.has(p)) cut(p);
    },
    up() {
      isDown = false;
    },
    cuts: () => cuts,
    async close() {
      for (const p of [...pairs]) cut(p);
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

// A Postgres wire-protocol front for one PGlite, safe for several concurrent client connections.
//
// Why not PGLiteSocketServer (@electric-sql/pglite-socket 0.2.17)? PGlite is ONE backend session, and
// that server queues each protocol message separately. Outside an explicit transaction, two connections'
// extended-protocol sequences (Parse/Bind/Describe/Execute/Sync) interleave inside the one session and
// clobber each other's unnamed portal: with three postgres.js clients of one connection each running 600
// queries and 30 transactions at once, 57 of them failed (`portal "" does not exist`); none fail here.
//
// Here the unit of scheduling is a batch: a connection's messages up to and including Sync or Query
// (a simple query), run in one execProtocolRawStream call. A connection holds the session from its first
// batch until a batch ends with the session idle (not inside BEGIN … COMMIT/ROLLBACK), so transactions
// and extended-protocol sequences are never interleaved. Consequences for tests:
// - session state is shared by all connections: use `SET LOCAL` inside a transaction, never plain `SET`;
// - a transaction that waits on a query of ANOTHER connection deadlocks (real Postgres would only block
//   on row locks); keep transactions on their own connection's work;
// - a connection that disconnects while holding the session gets its transaction rolled back.
import { createServer, type Server, type Socket } from 'node:net';
import type { PGlite } from '@electric-sql/pglite';

const SSL_REQUEST = 80877103;
const GSSENC_REQUEST = 80877104;
const CANCEL_REQUEST = 80877102;
const PROTOCOL_3 = 196608;

/** Frontend message types that end a batch: the client waits for the backend after them. */
const BATCH_END = new Set(['S', 'Q', 'H', 'c', 'f'].map((c) => c.charCodeAt(0)));
const TERMINATE = 'X'.charCodeAt(0);
const SYNC = Uint8Array.from([0x53, 0, 0, 0, 4]);

/** Simple-query message `Q` for one SQL string. */
function queryMessage(text: string): Uint8Array {
  const body = Buffer.from(`${text}\0`, 'utf8');
  const msg = Buffer.alloc(5 + body.length);
  msg.write('Q', 0, 'latin1');
  msg.writeInt32BE(4 + body.length, 1);
  body.copy(msg, 5);
  return msg;
}

/** Hands the single PGlite session to one connection at a time. */
class SessionLock {
  private owner: Connection | null = null;
  private waiters: { conn: Connection; resolve: () => void }[] = [];

  async acquire(conn: Connection): Promise<void> {
    if (this.owner === conn) return;
    if (this.owner === null) {
      this.owner = conn;
      return;
    }
    await new Promise<void>((resolve) => this.waiters.push({ conn, resolve }));
  }

  release(conn: Connection): void {
    if (this.owner !== conn) return;
    const next = this.waiters.shift();
    this.owner = next ? next.conn : null;
    next?.resolve();
  }

  holds(conn: Connection): boolean {
    return this.owner === conn;
  }

  drop(conn: Connection): void {
    this.waiters = this.waiters.filter((w) => w.conn !== conn);
    this.release(conn);
  }
}

class Connection {
  private buffer = Buffer.alloc(0);
  private started = false;
  private batch: Buffer[] = [];
  private chain: Promise<void> = Promise.resolve();
  private closed = false;
  private readonly socket: Socket;
  private readonly db: PGlite;
  private readonly lock: SessionLock;
  /** Settles once the socket closed and the session was cleaned up. */
  readonly done: Promise<void>;
  private resolveDone!: () => void;

  constructor(socket: Socket, db: PGlite, lock: SessionLock) {
    this.socket = socket;
    this.db = db;
    this.lock = lock;
    this.done = new Promise((resolve) => {
      this.resolveDone = resolve;
    });
    socket.setNoDelay(true);
    socket.on('data', (data: Buffer) => {
      this.buffer = Buffer.concat([this.buffer, data]);
      this.chain = this.chain.then(() => this.drain()).catch((err) => this.fail(err));
    });
    socket.on('close', () => this.onClose());
    socket.on('error', () => socket.destroy());
  }

  /** Splits the buffer into messages and runs every complete batch, in order. */
  private async drain(): Promise<void> {
    while (!this.closed) {
      if (!this.started) {
        if (this.buffer.length < 8) return;
        const len = this.buffer.readInt32BE(0);
        if (this.buffer.length < len) return;
        const code = this.buffer.readInt32BE(4);
        const msg = this.buffer.subarray(0, len);
        this.buffer = this.buffer.subarray(len);
        if (code === SSL_REQUEST || code === GSSENC_REQUEST) {
          this.socket.write('N');
        } else if (code === CANCEL_REQUEST) {
          this.socket.end(); // PGlite has no backend to signal
          return;
        } else if (code === PROTOCOL_3) {
          this.started = true;
          await this.run(msg, true);
        } else {
          throw new Error(`unsupported startup code ${code}`);
        }
        continue;
      }
      if (this.buffer.length < 5) return;
      const len = 1 + this.buffer.readInt32BE(1);
      if (this.buffer.length < len) return;
      const type = this.buffer[0];
      const msg = this.buffer.subarray(0, len);
      this.buffer = this.buffer.subarray(len);
      if (type === TERMINATE) {
        this.socket.end();
        return;
      }
      this.batch.push(msg);
      if (BATCH_END.has(type)) {
        const batch = Buffer.concat(this.batch);
        this.batch = [];
        // After Flush (H) the client continues the same extended sequence: keep the session.
        await this.run(batch, type !== 'H'.charCodeAt(0));
      }
    }
  }

  /** Runs one batch with the session held; gives the session back when it ends idle. */
  private async run(batch: Uint8Array, mayRelease: boolean): Promise<void> {
    await this.lock.acquire(this);
    if (this.closed) return this.lock.release(this);
    await this.db.runExclusive(() =>
      this.db.execProtocolRawStream(batch, {
        onRawData: (bytes) => {
          if (!this.closed && this.socket.writable) this.socket.write(Buffer.from(bytes));
        },
      }),
    );
    if (mayRelease && !this.db.isInTransaction()) this.lock.release(this);
  }

  private fail(err: unknown): void {
    console.error('[pglite-wire] connection failed:', err);
    this.socket.destroy();
  }

  /** Leaves the session clean for the next connection: end any extended sequence and open transaction. */
  private async onClose(): Promise<void> {
    this.closed = true;
    await this.chain;
    if (this.lock.holds(this)) {
      try {
        const discard = { onRawData: () => {} };
        await this.db.runExclusive(async () => {
          await this.db.execProtocolRawStream(SYNC, discard);
          if (this.db.isInTransaction())
            await this.db.execProtocolRawStream(queryMessage('ROLLBACK'), discard);
        });
      } catch (err) {
        console.error('[pglite-wire] cleanup after disconnect failed:', err);
      }
    }
    this.lock.drop(this);
    this.resolveDone();
  }
}

export interface WireServer {
  port: number;
  close(): Promise<void>;
}

/** Serves `db` on host:port (port 0: a free one) until close(). */
export async function serveWire(db: PGlite, host = '127.0.0.1', port = 0): Promise<WireServer> {
  await db.waitReady;
  const lock = new SessionLock();
  const connections = new Map<Socket, Connection>();
  const server: Server = createServer((socket) => {
    const conn = new Connection(socket, db, lock);
    connections.set(socket, conn);
    void conn.done.then(() => connections.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const address = server.address();
  if (address === null || typeof address !== 'object') throw new Error('server has no TCP address');
  return {
    port: address.port,
    close: async () => {
      const closing = new Promise<void>((resolve) => server.close(() => resolve()));
      const open = [...connections.entries()];
      for (const [socket] of open) socket.destroy();
      await Promise.all(open.map(([, conn]) => conn.done));
      await closing;
    },
  };
}

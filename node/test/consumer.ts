// A TypeScript consumer of the Node package's declarations (tsc --noEmit in
// scripts/test-web.sh): the same code shape as the browser consumer.
import { TideSync, TideSyncError, type LocalEntity, type NodeOpenOptions, type Status, type SyncEvent } from "../index";
import { serve } from "../electron/bridge";
import { openForElectron, type ElectronLike } from "../electron/main";

async function main(): Promise<void> {
  const db: TideSync = await TideSync.open({
    path: "/var/lib/desk/tidesync.db",
    key: { hostKey: new Uint8Array(32) },
    serverUrl: "http://127.0.0.1:8080",
    apiKey: "ts_x",
    terminalId: "desk-1",
    branchId: "hotel-1",
    policies: { rooms: "merge-three-way" },
    pullIntervalMs: 5000,
  });
  const room: LocalEntity = await db.create("rooms", { status: "dirty", floor: 3 }, "101");
  const again: LocalEntity | null = await db.get("rooms", room.id);
  const page: LocalEntity[] = await db.query("rooms", { after: "100", limit: 50 });
  const off = db.subscribe({ collection: "rooms" }, (e: SyncEvent) => void e);
  const offStatus = db.onStatus((s: Status) => void s.pending);
  await db.setOnline(false);
  try {
    await db.patch("rooms", "nope", { status: "clean" });
  } catch (e) {
    if (e instanceof TideSyncError && e.code === "NOT_FOUND") void again;
  }
  const n: number = await db.retryAll();
  void [page, n];
  off();
  offStatus();
  db.close();
  // A credentials callback instead of apiKey: a key, a promise of one, or none yet.
  let token: string | null = null;
  const rotated: TideSync = await TideSync.open({
    path: "/var/lib/desk/rotated.db", key: { plaintext: true }, serverUrl: "http://127.0.0.1:8080",
    terminalId: "desk-1", branchId: "hotel-1", credentials: async () => token,
  });
  token = "ts_y";
  rotated.close();
  // @ts-expect-error: credentials gives a string (the key), not an object
  await TideSync.open({ path: "x", key: { plaintext: true }, serverUrl: "", credentials: () => ({ key: "k" }) });
  // @ts-expect-error: webCrypto keys exist only in the browser
  await TideSync.open({ path: "x", key: { webCrypto: true }, serverUrl: "", apiKey: "", terminalId: "", branchId: "" });
}
void main;

// Typed by a declared schema: collection names, field names and types are
// checked, results typed.
type Hotel = {
  rooms: { number: string; status: "clean" | "dirty"; floor?: number; note?: string };
  sales: { total: number; till?: string };
};

async function typed(options: NodeOpenOptions<Hotel>): Promise<void> {
  const db = await TideSync.open<Hotel>({ ...options, policies: { rooms: "merge-three-way", sales: "append-only" },
    retry: { baseMs: 250, capMs: 60_000 }, maxUploadBytesPerSec: 64_000 });
  const room = await db.create("rooms", { number: "101", status: "dirty" }, "101");
  const status: "clean" | "dirty" = room.fields.status;
  const stopLive: () => void = db.live({ collection: "rooms", after: "100", limit: 20 }, (rows) => {
    const s: "clean" | "dirty" | undefined = rows[0]?.fields.status;
    void s;
  });
  stopLive();
  // @ts-expect-error a live query of a collection the schema does not have
  db.live({ collection: "guests" }, () => {});
  const patched = await db.patch("rooms", room.id, { status: "clean", floor: 1, note: null });
  const floor: number | undefined = patched.fields.floor;
  const page = await db.query("rooms", { limit: 10 });
  const numbers: string[] = page.map((r) => r.fields.number);
  const sale = await db.append("sales", { total: 9.5 });
  const total: number = sale.fields.total;
  const off = db.subscribe({ collection: "sales", id: sale.id }, (e) => {
    if (e.type === "changed") {
      const t: number | undefined = e.entity?.fields.total;
      void t;
    }
  });
  // A typed database serves the Electron bridge as an untyped one would.
  const stop = serve({ postMessage() {}, close() {} }, db);
  // @ts-expect-error a collection-name typo
  await db.get("room", "101");
  // @ts-expect-error a field-name typo in create
  await db.create("rooms", { number: "102", stauts: "dirty" });
  // @ts-expect-error a wrong field type
  await db.create("sales", { total: "9.50" });
  // @ts-expect-error null for a required field in patch
  await db.patch("rooms", "101", { number: null });
  // @ts-expect-error a value that is not JSON
  await db.patch("rooms", "101", { note: new Date() });
  // @ts-expect-error a policy for a collection not in the schema
  await TideSync.open<Hotel>({ ...options, policies: { guests: "server-wins" } });
  void [status, numbers, total, floor];
  const electron = {} as ElectronLike;
  const desk = await openForElectron<Hotel>(electron, { serverUrl: "", policies: { rooms: "server-wins" } });
  const r: "clean" | "dirty" | undefined = (await desk.get("rooms", "101"))?.fields.status;
  void r;
  // @ts-expect-error the Electron store is typed by the schema too
  await desk.query("room");
  stop();
  off();
  db.close();
}
void typed;

// A TypeScript consumer of the Node package's declarations (tsc --noEmit in
// scripts/test-web.sh): the same code shape as the browser consumer.
import { TideSync, TideSyncError, type LocalEntity, type Status, type SyncEvent } from "../index";

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
  // @ts-expect-error: webCrypto keys exist only in the browser
  await TideSync.open({ path: "x", key: { webCrypto: true }, serverUrl: "", apiKey: "", terminalId: "", branchId: "" });
}
void main;

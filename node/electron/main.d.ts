// tidesync in Electron's main process (main.js).
import type { NodeOpenOptions, Schema, TideSync, Untyped } from "../index";
import type { PortLike } from "./bridge";

/** The few Electron objects used, as `require('electron')` has them. */
export interface SafeStorageLike {
  isEncryptionAvailable(): boolean;
  getSelectedStorageBackend?(): string;
  encryptString(plain: string): Uint8Array;
  decryptString(encrypted: Uint8Array): string;
}
export interface ElectronLike {
  app: { getPath(name: "userData"): string; on(event: "will-quit", fn: () => void): unknown };
  ipcMain: {
    on(channel: string, fn: (event: { sender: WebContentsLike }) => void): unknown;
    removeListener(channel: string, fn: (...args: never[]) => void): unknown;
  };
  safeStorage: SafeStorageLike;
  MessageChannelMain: new () => { port1: PortLike; port2: unknown };
}
export interface WebContentsLike {
  postMessage(channel: string, message: unknown, transfer: unknown[]): void;
  once(event: "destroyed", fn: () => void): unknown;
}

/** The store's 32-byte host key, kept on disk in `file` only encrypted by safeStorage.
 *  Throws STORE_WRONG_KEY when safeStorage cannot encrypt, or only obfuscates (`basic_text`) unless `allowWeak`. */
export declare function keyFromSafeStorage(safeStorage: SafeStorageLike, file: string, options?: { allowWeak?: boolean }): Uint8Array;

/** Serves `db` to every window whose preload asks for it. Returns the function that stops. */
export declare function attach(electron: Pick<ElectronLike, "ipcMain" | "MessageChannelMain">, db: TideSync): () => void;

/** Opens the store in userData under a safeStorage key and serves it to windows; closes it at quit.
 *  Typed by schema `S` as `TideSync.open<S>()`. */
export declare function openForElectron<S extends Schema = Untyped>(
  electron: ElectronLike,
  options: Omit<NodeOpenOptions<NoInfer<S>>, "path" | "key"> & { allowWeak?: boolean },
): Promise<TideSync<S>>;

export { serve } from "./bridge";

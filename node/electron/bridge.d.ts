// The main-process half of the Electron bridge (bridge.js).
import type { TideSync } from "../index";

/** Anything with postMessage and message events: Electron's MessagePortMain or a DOM/Node MessagePort. */
export interface PortLike {
  postMessage(message: unknown): void;
  close(): void;
}

/** The TideSync methods a renderer may call (the lifecycle stays in the main process). */
export declare const METHODS: readonly string[];

/** {send, listen, close} over a port. */
export declare function endpoint(port: PortLike): {
  send(message: unknown): void;
  listen(fn: (message: unknown) => void): void;
  close(): void;
};

/** Serves `db` to the renderer at the other end of `port`. Returns the function that stops. */
export declare function serve(port: PortLike, db: TideSync): () => void;

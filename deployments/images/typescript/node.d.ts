// Minimal declarations of the Node.js globals and built-in modules, because
// Debian packages no @types/node. The compile command passes this file to tsc
// next to the program. Imports of the listed modules are typed `any`.

declare var console: {
  log(...data: any[]): void;
  error(...data: any[]): void;
  warn(...data: any[]): void;
  info(...data: any[]): void;
  debug(...data: any[]): void;
};

declare var process: {
  argv: string[];
  env: { [name: string]: string | undefined };
  exitCode: number | undefined;
  exit(code?: number): never;
  stdin: any;
  stdout: any;
  stderr: any;
  hrtime: any;
  memoryUsage(): any;
  nextTick(callback: (...args: any[]) => void, ...args: any[]): void;
};

declare var require: (id: string) => any;
declare var module: any;
declare var exports: any;
declare var __dirname: string;
declare var __filename: string;
declare var Buffer: any;

declare function setTimeout(callback: (...args: any[]) => void, ms?: number, ...args: any[]): any;
declare function clearTimeout(handle: any): void;
declare function setInterval(callback: (...args: any[]) => void, ms?: number, ...args: any[]): any;
declare function clearInterval(handle: any): void;
declare function setImmediate(callback: (...args: any[]) => void, ...args: any[]): any;
declare function queueMicrotask(callback: () => void): void;

declare class TextEncoder {
  encode(input?: string): Uint8Array;
}
declare class TextDecoder {
  constructor(label?: string);
  decode(input?: ArrayBufferView | ArrayBuffer): string;
}

declare module "assert";
declare module "buffer";
declare module "child_process";
declare module "crypto";
declare module "events";
declare module "fs";
declare module "fs/promises";
declare module "os";
declare module "path";
declare module "readline";
declare module "stream";
declare module "string_decoder";
declare module "util";
declare module "worker_threads";
declare module "zlib";
declare module "node:assert";
declare module "node:buffer";
declare module "node:child_process";
declare module "node:crypto";
declare module "node:events";
declare module "node:fs";
declare module "node:fs/promises";
declare module "node:os";
declare module "node:path";
declare module "node:readline";
declare module "node:stream";
declare module "node:string_decoder";
declare module "node:util";
declare module "node:worker_threads";
declare module "node:zlib";

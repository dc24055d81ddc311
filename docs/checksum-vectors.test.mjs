// The mutation checksum written again from PROTOCOL.md ("Canonical JSON")
// alone, in plain Node (no Rust, no package), and run against every vector
// of docs/checksum-vectors.json: `node --test docs/`. A client in another
// language can follow the same steps.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";

const vectors = JSON.parse(readFileSync(new URL("./checksum-vectors.json", import.meta.url), "utf8"));

// A JSON reader that keeps each number's token: the rule tells `1` (an
// integer) from `1.0` (a double), which JSON.parse does not.
function parse(text) {
  let i = 0;
  const ws = () => { while (" \t\n\r".includes(text[i]) && i < text.length) i++; };
  const value = () => {
    ws();
    const c = text[i];
    if (c === "{") {
      i++;
      const members = new Map();
      ws();
      if (text[i] === "}") { i++; return { object: members }; }
      for (;;) {
        ws();
        const key = string();
        ws();
        assert.equal(text[i++], ":");
        members.delete(key); // a repeated key: the last one counts
        members.set(key, value());
        ws();
        if (text[i++] === "}") return { object: members };
      }
    }
    if (c === "[") {
      i++;
      const items = [];
      ws();
      if (text[i] === "]") { i++; return { array: items }; }
      for (;;) {
        items.push(value());
        ws();
        if (text[i++] === "]") return { array: items };
      }
    }
    if (c === '"') return { string: string() };
    for (const word of ["true", "false", "null"]) {
      if (text.startsWith(word, i)) { i += word.length; return { literal: word }; }
    }
    const m = /^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/.exec(text.slice(i));
    assert.ok(m, `not JSON at ${i}`);
    i += m[0].length;
    return { number: m[0] };
  };
  const string = () => {
    const m = /^"(?:[^"\\]|\\.)*"/s.exec(text.slice(i));
    i += m[0].length;
    return JSON.parse(m[0]);
  };
  const v = value();
  ws();
  assert.equal(i, text.length, "one JSON value");
  return v;
}

const I64_MIN = -(2n ** 63n);
const U64_MAX = 2n ** 64n - 1n;

function number(token) {
  if (!/[.eE]/.test(token) && token !== "-0") {
    const n = BigInt(token);
    if (n >= I64_MIN && n <= U64_MAX) return n.toString();
  }
  const x = Number(token); // the nearest double
  if (x === 0) return Object.is(x, -0) ? "-0.0" : "0.0";
  const [mantissa, e] = Math.abs(x).toExponential().split("e"); // shortest digits
  const exp = Number(e);
  const digits = mantissa.replace(".", "");
  const sign = x < 0 ? "-" : "";
  if (exp >= -5 && exp <= 15) {
    if (exp < 0) return `${sign}0.${"0".repeat(-exp - 1)}${digits}`;
    if (digits.length <= exp + 1) return `${sign}${digits}${"0".repeat(exp + 1 - digits.length)}.0`;
    return `${sign}${digits.slice(0, exp + 1)}.${digits.slice(exp + 1)}`;
  }
  return `${sign}${mantissa}e${exp > 0 ? "+" : "-"}${Math.abs(exp)}`;
}

const SHORT = { '"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r" };
function str(s) {
  let out = '"';
  for (const ch of s) {
    const cp = ch.codePointAt(0);
    if (SHORT[ch]) out += SHORT[ch];
    else if (cp < 0x20) out += "\\u" + cp.toString(16).padStart(4, "0");
    else out += ch;
  }
  return out + '"';
}

const utf8 = (s) => Buffer.from(s, "utf8");
function canonical(v) {
  if ("literal" in v) return v.literal;
  if ("number" in v) return number(v.number);
  if ("string" in v) return str(v.string);
  if ("array" in v) return `[${v.array.map(canonical).join(",")}]`;
  const keys = [...v.object.keys()].sort((a, b) => Buffer.compare(utf8(a), utf8(b)));
  return `{${keys.map((k) => `${str(k)}:${canonical(v.object.get(k))}`).join(",")}}`;
}

function mutationText(m) {
  const p = m.payload === null ? "null" : canonical(parse(m.payload));
  return `{"c":${str(m.collection)},"e":${str(m.entity_id)},"k":${str(m.kind)},"p":${p}}`;
}

test("the vectors cover values and mutations", () => {
  assert.ok(vectors.values.length >= 10);
  assert.ok(vectors.mutations.length >= 5);
});

for (const v of vectors.values) {
  test(`value: ${v.name}`, () => assert.equal(canonical(parse(v.json)), v.canonical));
}

for (const m of vectors.mutations) {
  test(`mutation: ${m.name}`, () => {
    const text = mutationText(m);
    assert.equal(text, m.canonical);
    assert.equal(createHash("sha256").update(text, "utf8").digest("hex"), m.checksum);
  });
}

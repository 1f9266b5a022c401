// MessagePack decoding for the console: Pinnacle publishes ticks, depth, status and order
// events as MessagePack maps with string keys (docs/PROTOCOL.md, "Encoding"). Requests
// from the console are JSON (Content-Type: application/json), so only decoding is needed.
// Integers beyond 2^53 come back as BigInt; none of Pinnacle's fields get near that.

const text = new TextDecoder("utf-8", { fatal: false });

export class DecodeError extends Error {}

/** Decodes one MessagePack value that fills `bytes` (a Uint8Array). */
export function decode(bytes) {
  const reader = new Reader(bytes);
  const value = reader.value(0);
  if (reader.pos !== bytes.length) throw new DecodeError("trailing bytes after the value");
  return value;
}

class Reader {
  constructor(bytes) {
    this.bytes = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.pos = 0;
  }

  need(n) {
    if (this.pos + n > this.bytes.length) throw new DecodeError("truncated MessagePack");
    const at = this.pos;
    this.pos += n;
    return at;
  }

  u8() { return this.view.getUint8(this.need(1)); }
  u16() { return this.view.getUint16(this.need(2)); }
  u32() { return this.view.getUint32(this.need(4)); }

  int64(signed) {
    const at = this.need(8);
    const big = signed ? this.view.getBigInt64(at) : this.view.getBigUint64(at);
    const small = Number(big);
    return Number.isSafeInteger(small) ? small : big;
  }

  str(n) { const at = this.need(n); return text.decode(this.bytes.subarray(at, at + n)); }
  bin(n) { const at = this.need(n); return this.bytes.slice(at, at + n); }

  array(n, depth) {
    const out = new Array(n);
    for (let i = 0; i < n; i++) out[i] = this.value(depth + 1);
    return out;
  }

  map(n, depth) {
    const out = {};
    for (let i = 0; i < n; i++) {
      const key = this.value(depth + 1);
      out[String(key)] = this.value(depth + 1);
    }
    return out;
  }

  value(depth) {
    if (depth > 64) throw new DecodeError("MessagePack nested too deeply");
    const b = this.u8();
    if (b <= 0x7f) return b;
    if (b >= 0xe0) return b - 0x100;
    if ((b & 0xf0) === 0x80) return this.map(b & 0x0f, depth);
    if ((b & 0xf0) === 0x90) return this.array(b & 0x0f, depth);
    if ((b & 0xe0) === 0xa0) return this.str(b & 0x1f);
    switch (b) {
      case 0xc0: return null;
      case 0xc2: return false;
      case 0xc3: return true;
      case 0xc4: return this.bin(this.u8());
      case 0xc5: return this.bin(this.u16());
      case 0xc6: return this.bin(this.u32());
      case 0xc7: { const n = this.u8(); this.need(1); return this.bin(n); }
      case 0xc8: { const n = this.u16(); this.need(1); return this.bin(n); }
      case 0xc9: { const n = this.u32(); this.need(1); return this.bin(n); }
      case 0xca: return this.view.getFloat32(this.need(4));
      case 0xcb: return this.view.getFloat64(this.need(8));
      case 0xcc: return this.u8();
      case 0xcd: return this.u16();
      case 0xce: return this.u32();
      case 0xcf: return this.int64(false);
      case 0xd0: return this.view.getInt8(this.need(1));
      case 0xd1: return this.view.getInt16(this.need(2));
      case 0xd2: return this.view.getInt32(this.need(4));
      case 0xd3: return this.int64(true);
      case 0xd4: this.need(2); return null;
      case 0xd5: this.need(3); return null;
      case 0xd6: this.need(5); return null;
      case 0xd7: this.need(9); return null;
      case 0xd8: this.need(17); return null;
      case 0xd9: return this.str(this.u8());
      case 0xda: return this.str(this.u16());
      case 0xdb: return this.str(this.u32());
      case 0xdc: return this.array(this.u16(), depth);
      case 0xdd: return this.array(this.u32(), depth);
      case 0xde: return this.map(this.u16(), depth);
      case 0xdf: return this.map(this.u32(), depth);
      default: throw new DecodeError(`unknown MessagePack byte 0x${b.toString(16)}`);
    }
  }
}

// Boot a MicroPython UF2 in the rp2040js emulator with a littlefs image in flash, print what
// the board writes on its USB REPL, and stop at an end marker (or a time limit).
//
//   node run.mjs <rp2040js dir> <bootrom.bin> <firmware.uf2> <littlefs.img> <image offset>
//                [--input TEXT] [--end MARKER] [--timeout-s N] [--mhz N]
//
// The emulator has no CYW43 radio and cannot program flash (done here instead, below). The
// REPL is on USB CDC, whose receive buffer holds 512 bytes: --input is sent in 64-byte
// pieces, each once the emulator's transmit FIFO is empty. Exit 0 at the end marker, 3 on
// the time limit (wall clock).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  if (i < 0) return dflt;
  const v = args[i + 1];
  args.splice(i, 2);
  return v;
};
const input = opt('--input', '');
const endMarker = opt('--end', '');
const timeoutS = Number(opt('--timeout-s', '120'));
// Emulated nanoseconds per CPU cycle: 8 is the Simulator's 125 MHz. A larger value makes
// emulated time pass faster per instruction (busy-waits end sooner); what the program
// allocates does not depend on it.
const cycleNanos = 1000 / Number(opt('--mhz', '125'));
const [libDir, bootromPath, uf2Path, imagePath, offsetText] = args;
if (!offsetText) {
  console.error('usage: node run.mjs <rp2040js dir> <bootrom> <uf2> <littlefs image> <offset>');
  process.exit(2);
}
const { Simulator, USBCDC } = await import(
  pathToFileURL(join(libDir, 'node_modules', 'rp2040js', 'dist', 'esm', 'index.js')).href);

const FLASH_BASE = 0x10000000;
const sim = new Simulator();
const mcu = sim.rp2040;
// the emulator logs every unimplemented register it meets: keep the REPL's output readable
const quiet = () => {};
mcu.logger = { debug: quiet, info: quiet, warn: quiet,
  error: process.env.RP2040JS_VERBOSE ? (c, m) => console.error(c + ': ' + m) : quiet };
const rom = readFileSync(bootromPath);
mcu.loadBootrom(new Uint32Array(rom.buffer, rom.byteOffset, rom.length / 4));

// rp2040js does not emulate the QSPI flash's program and erase commands, so littlefs cannot
// write. The boot ROM's flash_range_erase ('RE') and flash_range_program ('RP'), which the
// pico-sdk calls for every flash write, are done here instead: found in the ROM's function
// table (its address at 0x14, entries of (code, address) half-words), run on mcu.flash when
// the CPU reaches them, and returned from.
function romFunc(code) {
  for (let i = rom.readUInt16LE(0x14); rom.readUInt16LE(i); i += 4) {
    if (rom.readUInt16LE(i) === code) return rom.readUInt16LE(i + 2) & ~1;
  }
  throw new Error('boot ROM has no function ' + code);
}
const code = (a, b) => a.charCodeAt(0) | (b.charCodeAt(0) << 8);
const ROM_ERASE = romFunc(code('R', 'E'));
const ROM_PROGRAM = romFunc(code('R', 'P'));

function flashCall(core) {
  const r = core.registers;
  if (core.PC === ROM_ERASE) {
    mcu.flash.fill(0xff, r[0], r[0] + r[1]);          // (offset, count, ...)
  } else {
    for (let k = 0; k < r[2]; k++) {                   // (offset, data, count)
      mcu.flash[r[0] + k] &= mcu.readUint8(r[1] + k); // programming only clears bits
    }
  }
  core.PC = core.LR & ~1;
}

// UF2: 512-byte blocks, magic words at 0, 4 and 508, target address at 12, size at 16, data at 32
const uf2 = readFileSync(uf2Path);
for (let off = 0; off + 512 <= uf2.length; off += 512) {
  const v = new DataView(uf2.buffer, uf2.byteOffset + off, 512);
  if (v.getUint32(0, true) !== 0x0a324655 || v.getUint32(4, true) !== 0x9e5d5157 ||
      v.getUint32(508, true) !== 0x0ab16f30) {
    console.error('not a UF2 block at byte ' + off);
    process.exit(2);
  }
  const addr = v.getUint32(12, true);
  const size = v.getUint32(16, true);
  mcu.flash.set(uf2.subarray(off + 32, off + 32 + size), addr - FLASH_BASE);
}
mcu.flash.set(readFileSync(imagePath), Number(offsetText));

const cdc = new USBCDC(mcu.usbCtrl);
let out = '';
let pending = Buffer.from(input, 'latin1');
const started = Date.now();

function feed() {
  // a piece at a time, and only once the previous one has left the emulator's transmit FIFO
  if (!pending.length || !cdc.txFIFO.empty) return;
  const piece = pending.subarray(0, 64);
  pending = pending.subarray(64);
  for (const b of piece) cdc.sendSerialByte(b);
}

let stopped = false;

function execute() {
  // Simulator.execute(), with the cycle time above and setImmediate between batches
  const core = mcu.core;
  const clock = sim.clock;
  for (let i = 0; i < 1000000 && !stopped; i++) {
    if (core.waiting) {
      const nanos = clock.nanosToNextAlarm;
      clock.tick(nanos);
      i += nanos / cycleNanos;
    } else {
      const pc = core.PC;
      if (pc === ROM_ERASE || pc === ROM_PROGRAM) flashCall(core);
      clock.tick(core.executeInstruction() * cycleNanos);
    }
  }
  if (!stopped) setImmediate(execute);
}

function finish(code) {
  stopped = true;
  clearInterval(timer);
  process.stdout.write('\n[rp2040js] ' + ((Date.now() - started) / 1000).toFixed(1) +
    ' s wall, ' + (sim.clock.nanos / 1e9).toFixed(2) + ' s emulated\n');
  process.exit(code);
}

cdc.onDeviceConnected = () => feed();
cdc.onSerialData = (data) => {
  const text = Buffer.from(data).toString('latin1');
  process.stdout.write(text);
  out += text;
  if (endMarker && out.includes(endMarker)) finish(0);
  if (out.length > 65536) out = out.slice(-4096);
};
const timer = setInterval(() => {
  feed();
  if (Date.now() - started > timeoutS * 1000) {
    process.stdout.write('\n[rp2040js] timed out after ' + timeoutS + ' s\n');
    finish(3);
  }
}, 20);

mcu.core.PC = FLASH_BASE;
execute();

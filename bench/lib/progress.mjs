// Progress on stderr: one line per finished case, the running one rewritten in place on a terminal.

export class Progress {
  constructor(total) {
    this.total = total;
    this.i = 0;
    this.tty = !!process.stderr.isTTY;
    this.t0 = performance.now();
    this.prefix = '';
  }
  #write(text, final) {
    const elapsed = ((performance.now() - this.t0) / 1000).toFixed(0).padStart(4);
    const line = `${elapsed}s [${this.i}/${this.total}] ${this.prefix}${text}`;
    if (this.tty) {
      const width = process.stderr.columns || 120;
      process.stderr.write(`\r\x1b[2K${line.slice(0, width - 1)}`);
    } else if (final) {
      process.stderr.write(`${line}\n`);
    }
  }
  /** What is running now (shown on a terminal only). */
  status(text) {
    this.#write(`${text} …`, false);
  }
  /** A finished case. */
  done(text) {
    this.i++;
    this.#write(text, true);
  }
  /** A message kept on screen. */
  note(text) {
    if (this.tty) process.stderr.write('\r\x1b[2K');
    process.stderr.write(`${text}\n`);
  }
  end() {
    if (this.tty) process.stderr.write('\n');
  }
}

/** Milliseconds for a progress line: 3 significant digits below 1, 2 decimals below 100. */
export const fmtMs = (ms) => (ms >= 100 ? ms.toFixed(0) : ms >= 1 ? ms.toFixed(2) : ms.toPrecision(3));

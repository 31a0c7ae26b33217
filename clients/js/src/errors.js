// Typed errors of the magicoin client: each carries a `code`, what it `got` and what it `expected`,
// so a caller can branch on the code and a person can read the message.

const EXCERPT_CHARS = 120;

/** Render a value for a message: short, and never the whole of a large input. */
export function formatExcerpt(value) {
  let text;
  try {
    text = typeof value === "string" ? JSON.stringify(value)
      : JSON.stringify(value, (_key, item) => (typeof item === "bigint" ? item.toString() : item));
  } catch {
    text = String(value);
  }
  if (text === undefined) text = String(value);
  return text.length > EXCERPT_CHARS ? `${text.slice(0, EXCERPT_CHARS)}… (${text.length} chars)` : text;
}

export class MagicoinError extends Error {
  /**
   * @param {string} reason what went wrong, in words
   * @param {{code?: string | number, got?: unknown, expected?: unknown, cause?: unknown}} [details]
   */
  constructor(reason, { code = "MAGICOIN_ERROR", got, expected, cause } = {}) {
    const parts = [];
    if (got !== undefined) parts.push(`got ${formatExcerpt(got)}`);
    if (expected !== undefined) parts.push(`expected ${formatExcerpt(expected)}`);
    super(parts.length ? `${reason} (${parts.join(", ")})` : reason, cause === undefined ? undefined : { cause });
    this.name = new.target.name;
    this.reason = reason;
    this.code = code;
    this.got = got;
    this.expected = expected;
  }
}

/** A routing, validation or reward policy the protocol does not have. */
export class PolicyError extends MagicoinError {
  constructor(reason, details = {}) {
    super(reason, { code: "UNSUPPORTED_POLICY", ...details });
  }
}

/** A work kind or payload field the chain would refuse; caught before anything is signed. */
export class PayloadError extends MagicoinError {
  constructor(reason, details = {}) {
    super(reason, { code: "INVALID_PAYLOAD", ...details });
  }
}

/** The node answered with an error: an HTTP status other than 200, a JSON-RPC error, a refused transaction. */
export class NodeRefusedError extends MagicoinError {
  constructor(reason, details = {}) {
    super(reason, { code: "NODE_REFUSED", ...details });
    this.status = details.status;
  }
}

/** The node could not be reached, or answered with something that is not what the protocol says. */
export class NodeUnreachableError extends MagicoinError {
  constructor(reason, details = {}) {
    super(reason, { code: "NODE_UNREACHABLE", ...details });
  }
}

/** An answer larger than the client's bound (whole response, or one line of an event stream). */
export class ResponseTooLargeError extends MagicoinError {
  constructor(reason, details = {}) {
    super(reason, { code: "RESPONSE_TOO_LARGE", ...details });
  }
}

/** The completion's stream ended with an error event, or ended without saying it was done. */
export class StreamError extends MagicoinError {
  constructor(reason, details = {}) {
    super(reason, { code: "STREAM_FAILED", ...details });
  }
}

/** A job or receipt did not reach the state asked for in time. */
export class TimeoutError extends MagicoinError {
  constructor(reason, details = {}) {
    super(reason, { code: "TIMEOUT", ...details });
  }
}

/** A work transaction was included, but the chain did not apply it (a status-0 receipt, with its reason). */
export class WorkFailedError extends MagicoinError {
  constructor(reason, details = {}) {
    super(reason, { code: "WORK_FAILED", ...details });
    this.receipt = details.receipt;
    this.hash = details.hash;
  }
}

// Bounded reads of what a node sends back: a whole JSON body up to a byte limit, and a server-sent
// event stream whose lines and total size are bounded, so a broken or hostile server cannot make the
// client buffer without end.
import { NodeRefusedError, NodeUnreachableError, ResponseTooLargeError } from "./errors.js";

/**
 * Every chunk of a response body, failing once more than `maxBytes` have come.
 * @param {Response} response
 * @param {number} maxBytes
 */
async function* readChunks(response, maxBytes) {
  if (!response.body) return;
  const reader = response.body.getReader();
  let total = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      total += value.byteLength;
      if (total > maxBytes) {
        throw new ResponseTooLargeError("the node's answer is larger than the client accepts", { got: `more than ${maxBytes} bytes`, expected: `at most ${maxBytes} bytes` });
      }
      yield value;
    }
  } finally {
    await reader.cancel().catch(() => {});
  }
}

/** The body as text, at most `maxBytes` of it (a larger one is refused, not cut). */
export async function readText(response, maxBytes) {
  const declared = Number(response.headers.get("content-length"));
  if (Number.isFinite(declared) && declared > maxBytes) {
    await response.body?.cancel().catch(() => {});
    throw new ResponseTooLargeError("the node's answer is larger than the client accepts", { got: `${declared} bytes`, expected: `at most ${maxBytes} bytes` });
  }
  const decoder = new TextDecoder();
  let text = "";
  for await (const chunk of readChunks(response, maxBytes)) text += decoder.decode(chunk, { stream: true });
  return text + decoder.decode();
}

/** A JSON body, bounded; `what` names the request in errors. */
export async function readJson(response, maxBytes, what) {
  const text = await readText(response, maxBytes);
  try {
    return JSON.parse(text);
  } catch {
    throw new NodeUnreachableError(`${what}: the node answered with something that is not JSON`, { got: text, expected: "JSON" });
  }
}

/** An OpenAI-shaped error body (`{error: {message, code, type}}`) as a NodeRefusedError. */
export async function toRefusal(response, maxBytes, what) {
  let body;
  try {
    body = JSON.parse(await readText(response, maxBytes));
  } catch (error) {
    if (error instanceof ResponseTooLargeError) throw error;
    body = null;
  }
  const detail = body && typeof body === "object" && body.error && typeof body.error === "object" ? body.error : {};
  const message = typeof detail.message === "string" ? detail.message : `HTTP ${response.status}`;
  return new NodeRefusedError(`${what}: the node refused the request: ${message}`, {
    code: typeof detail.code === "string" ? detail.code : `HTTP_${response.status}`, got: response.status, expected: 200, status: response.status,
  });
}

/**
 * The `data` of each server-sent event, in order. A line longer than `maxLineBytes`, or more
 * than `maxBytes` in all, ends the stream with ResponseTooLargeError.
 * @param {Response} response
 * @param {{maxLineBytes: number, maxBytes: number}} limits
 * @returns {AsyncGenerator<string>}
 */
export async function* readEvents(response, { maxLineBytes, maxBytes }) {
  const decoder = new TextDecoder();
  let pending = "";
  let data = [];
  const takeLine = (line) => {
    if (line.endsWith("\r")) line = line.slice(0, -1);
    if (line === "") {
      const event = data.length ? data.join("\n") : null;
      data = [];
      return event;
    }
    if (line.startsWith("data:")) data.push(line.slice(line.startsWith("data: ") ? 6 : 5));
    return null;  // comments (":"), event names and ids carry nothing this client needs
  };
  for await (const chunk of readChunks(response, maxBytes)) {
    pending += decoder.decode(chunk, { stream: true });
    let newline;
    while ((newline = pending.indexOf("\n")) >= 0) {
      const event = takeLine(pending.slice(0, newline));
      pending = pending.slice(newline + 1);
      if (event !== null) yield event;
    }
    // Counted in UTF-16 units, which bound the memory held as well as bytes would.
    if (pending.length > maxLineBytes) {
      throw new ResponseTooLargeError("an event-stream line is longer than the client accepts", { got: `more than ${maxLineBytes} characters`, expected: `at most ${maxLineBytes}` });
    }
  }
  pending += decoder.decode();
  const last = takeLine(pending);
  if (last !== null) yield last;
  const tail = takeLine("");
  if (tail !== null) yield tail;
}

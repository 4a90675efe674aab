// One WebSocket to /ws/chat, reopened by itself when it drops (backoff up to 10 s). Actions
// are requests whose answer is one frame; a turn is a stream of frames to a handler. A turn
// outlives a dropped socket on the server: once reopened, the page follows it again with
// `attach` from the last `seq` it had, so its answer goes on with no gap and no repeat.

const MAX_BACKOFF_MS = 10000;

export function newId(prefix) {
  const random = globalThis.crypto && crypto.randomUUID
    ? crypto.randomUUID()
    : `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
  return `${prefix}-${random}`;
}

/** An error frame's chunk as an Error: `code`, `retryable`, `retry_after`. */
export class ActionError extends Error {
  constructor(chunk) {
    super(chunk.error || "the request failed");
    this.code = chunk.code || "internal";
    this.retryable = Boolean(chunk.retryable);
    this.retryAfter = chunk.retry_after;
  }
}

export class Connection extends EventTarget {
  constructor(path) {
    super();
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    this.url = `${scheme}//${location.host}${path}`;
    this.socket = null;
    this.requests = new Map();
    this.turns = new Map();
    // Per turn in flight: its conversation and the last seq handed to its handler.
    this.places = new Map();
    this.backoff = 500;
    this.everOpened = false;
    this.stopped = false;
  }

  get online() {
    return this.socket !== null && this.socket.readyState === WebSocket.OPEN;
  }

  connect() {
    if (this.stopped) return;
    const socket = new WebSocket(this.url);
    this.socket = socket;
    socket.addEventListener("open", () => {
      this.backoff = 500;
      const reopened = this.everOpened;
      this.everOpened = true;
      this.resume();
      this.dispatchEvent(new CustomEvent("online", { detail: { reopened } }));
    });
    socket.addEventListener("message", (event) => this.receive(event.data));
    socket.addEventListener("close", (event) => this.closed(socket, event));
  }

  stop() {
    this.stopped = true;
    if (this.socket) this.socket.close(1000);
  }

  closed(socket, event) {
    if (this.socket !== socket) return;
    this.socket = null;
    const lost = { error: "the connection to the server was lost", code: "disconnected", retryable: true };
    for (const { reject } of this.requests.values()) reject(new ActionError(lost));
    this.requests.clear();
    // Turns whose conversation is known go on on the server: followed again once reopened.
    for (const [id, handler] of this.turns) {
      if (!this.places.get(id)?.conversation) {
        handler({ status: "error", chunk: lost });
        this.turns.delete(id);
      }
    }
    this.dispatchEvent(new CustomEvent("offline", { detail: { code: event.code, reason: event.reason } }));
    if (event.code === 4401 || this.stopped) return;
    const wait = this.backoff;
    this.backoff = Math.min(this.backoff * 2, MAX_BACKOFF_MS);
    setTimeout(() => this.connect(), wait);
  }

  receive(data) {
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      return;
    }
    const id = frame.request_id;
    const turn = this.turns.get(id);
    if (turn) {
      const place = this.places.get(id) || {};
      if (typeof frame.seq === "number") {
        if (frame.seq <= (place.seq || 0)) return; // already shown
        place.seq = frame.seq;
      }
      const conversation = frame.chunk && frame.chunk.metadata && frame.chunk.metadata.conversation_id;
      if (conversation && !place.conversation) place.conversation = conversation;
      this.places.set(id, place);
      if (frame.status === "complete" || frame.status === "error") {
        this.turns.delete(id);
        this.places.delete(id);
      }
      turn(frame);
      return;
    }
    const request = this.requests.get(id);
    if (request) {
      this.requests.delete(id);
      if (frame.status === "error") request.reject(new ActionError(frame.chunk || {}));
      else request.resolve(frame.chunk || {});
    }
  }

  send(frame) {
    if (!this.online) {
      throw new ActionError({ error: "not connected to the server; reconnecting…", code: "disconnected", retryable: true });
    }
    this.socket.send(JSON.stringify(frame));
  }

  /** Sends an action; resolves with its `complete` chunk, rejects with an ActionError. */
  request(action, payload) {
    const request_id = newId(action);
    return new Promise((resolve, reject) => {
      try {
        this.send({ action, request_id, payload });
      } catch (error) {
        reject(error);
        return;
      }
      this.requests.set(request_id, { resolve, reject });
    });
  }

  /** Starts a turn; `handler` gets each of its frames until `complete` or `error`. */
  chat(request_id, payload, handler) {
    this.send({ action: "chat", request_id, payload });
    this.turns.set(request_id, handler);
    this.places.set(request_id, { conversation: payload.conversation_id, seq: 0 });
  }

  /** After a reconnect: follows again every turn that was in flight, from its last frame. */
  resume() {
    for (const id of this.turns.keys()) {
      const place = this.places.get(id);
      const payload = { conversation_id: place.conversation, after_seq: place.seq || 0 };
      this.socket.send(JSON.stringify({ action: "attach", request_id: id, payload }));
    }
  }

  /** The user's decision on a tool call of turn `request_id` (no answer frame: the turn's
   * own frames show what happened). */
  approve(request_id, approval_id, decision, remember) {
    const payload = { approval_id, decision };
    if (remember) payload.remember = "conversation";
    this.send({ action: "approve", request_id, payload });
  }

  /** The user's answer to a server's question (`accept` with `content`, `decline`, `cancel`). */
  elicit(request_id, elicitation_id, action, content) {
    const payload = { elicitation_id, action };
    if (action === "accept") payload.content = content;
    this.send({ action: "elicit", request_id, payload });
  }

  cancel(request_id) {
    if (this.online) this.socket.send(JSON.stringify({ action: "cancel", request_id }));
  }
}

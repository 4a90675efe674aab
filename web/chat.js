// The open conversation: its history (paged, newest last), and live turns rendered from the
// turn's frames: text as Markdown while it streams, each tool call as a collapsible block,
// notices, and errors as alerts that say what to do. One turn at a time from this page.

import { h, clear, showDialog } from "./dom.js";
import { renderMarkdown } from "./markdown.js";
import { askQuestion } from "./question.js";
import { newId } from "./connection.js";

const PAGE = 100;
const RESULT_CHARS = 4000;

/** What a person can do about an error, by code. */
const HINTS = {
  provider_not_configured:
    "Set the provider's API key in the server's environment (for example OPENAI_API_KEY=sk-… " +
    "before starting it), or point a provider at a local model server (an llm.providers entry " +
    "whose base_url is, say, http://127.0.0.1:11434/v1); the README's Configuration section shows how.",
  provider_unavailable: "The model provider keeps failing, so requests to it are paused for a moment. Retry shortly.",
  provider_error: "The model provider failed. Retry; if it keeps failing, look at the server's log.",
  rate_limited: "The provider's rate limit is reached. Retry in a moment.",
  auth_error: "The provider refused its API key: check the key set on the server.",
  model_not_found: "Pick another model in the list at the top.",
  context_too_large: "The message is too long for the model's context: shorten it.",
  disconnected: "The connection dropped; what was answered is stored. Retry once it is back.",
  turn_timeout: "The answer took too long; what was answered is stored.",
};

export class ChatView {
  constructor({ connection, container, choice, onConversation, onTurnEnd, onBusy }) {
    this.connection = connection;
    this.container = container;
    this.choice = choice;
    this.onConversation = onConversation;
    this.onTurnEnd = onTurnEnd;
    this.onBusy = onBusy;
    this.conversationId = null;
    this.cursor = null;
    this.turn = null;
    this.groups = new Map();
    this.tools = new Map();
    this.loading = 0;
    this.reset();
  }

  get busy() {
    return this.turn !== null;
  }

  /** Stops showing the running turn (another conversation is opened): it goes on on the
   * server, which stores its answer. */
  detach() {
    if (!this.turn) return;
    // Its questions cannot be answered from here any more: the server's timeout answers them.
    this.closeQuestions(this.turn);
    this.turn = null;
    this.onBusy(false);
  }

  /** An empty view for a new conversation (created by its first message). */
  reset() {
    this.detach();
    this.conversationId = null;
    this.cursor = null;
    this.groups.clear();
    this.tools.clear();
    clear(this.container).appendChild(
      h("p", { class: "empty" }, "Ask anything. Answers stream in as they are written, and tool calls show as they run."),
    );
  }

  /** Shows a stored conversation; with `jumpTo`, pages back until that message is shown. */
  async open(conversationId, { jumpTo } = {}) {
    const ticket = ++this.loading;
    this.detach();
    const chunk = await this.connection.request("get_history", { conversation_id: conversationId, limit: PAGE });
    if (ticket !== this.loading) return;
    this.conversationId = conversationId;
    this.groups.clear();
    this.tools.clear();
    clear(this.container);
    this.cursor = chunk.metadata.next_cursor;
    this.container.appendChild(this.earlierButton());
    this.renderMessages(chunk.metadata.messages, null);
    if (!chunk.metadata.messages.length) {
      this.container.appendChild(h("p", { class: "empty" }, "No messages yet."));
    }
    if (jumpTo) await this.jumpTo(jumpTo, ticket);
    else this.scrollToEnd();
  }

  earlierButton() {
    const button = h("button", { type: "button", class: "earlier", hidden: !this.cursor }, "Load earlier messages");
    button.addEventListener("click", () => this.loadEarlier());
    this.earlier = button;
    return button;
  }

  async loadEarlier() {
    if (!this.cursor || !this.conversationId) return false;
    const chunk = await this.connection.request("get_history", {
      conversation_id: this.conversationId, limit: PAGE, cursor: this.cursor,
    });
    const before = this.container.scrollHeight - this.container.scrollTop;
    this.cursor = chunk.metadata.next_cursor;
    this.earlier.hidden = !this.cursor;
    this.renderMessages(chunk.metadata.messages, this.earlier.nextSibling);
    this.container.scrollTop = this.container.scrollHeight - before;
    return true;
  }

  async jumpTo(messageId, ticket) {
    for (let page = 0; page < 50 && !document.getElementById(`m-${messageId}`); page++) {
      if (ticket !== this.loading || !(await this.loadEarlier())) break;
    }
    const target = document.getElementById(`m-${messageId}`);
    if (!target) return;
    target.classList.add("highlight");
    target.scrollIntoView({ block: "center" });
    setTimeout(() => target.classList.remove("highlight"), 4000);
  }

  /** Stored messages, oldest first, inserted before `anchor` (null: at the end). */
  renderMessages(messages, anchor) {
    const fragment = document.createDocumentFragment();
    let group = null;
    let asked = null;
    for (const message of messages) {
      if (message.role === "user") {
        group = null;
        asked = message.content;
        fragment.appendChild(userMessage(message.content, message.id, message.request_id, message.attachments));
      } else if (message.role === "assistant") {
        if (!group || group.requestId !== message.request_id) {
          group = new Group(message.request_id);
          fragment.appendChild(group.element);
        }
        group.element.id = `m-${message.id}`;
        if (message.content) group.setText(message.content);
        for (const call of message.tool_calls || []) {
          const tool = new ToolBlock(call.function.name, null, call.function.arguments);
          this.tools.set(call.id, tool);
          group.add(tool.element);
        }
        if (group.segment) renderSegment(group.segment);
        group.segment = null;
        if (message.status !== "complete") {
          group.mark(message.status);
          if (asked !== null && message.request_id) this.offerRetry(group, asked, message.request_id);
        }
        group.footer(message.model, message.usage);
      } else if (message.role === "tool") {
        const tool = this.tools.get(message.tool_call_id);
        if (tool) tool.stored(message.content);
      }
    }
    this.container.insertBefore(fragment, anchor);
  }

  nearEnd() {
    const c = this.container;
    return c.scrollHeight - c.scrollTop - c.clientHeight < 120;
  }

  scrollToEnd() {
    this.container.scrollTop = this.container.scrollHeight;
  }

  /** Sends `text` as a new turn, with `attachments` (`[{uri, server}]`) if any. */
  send(text, requestId = newId("turn"), attachments = []) {
    if (this.busy) return;
    const empty = this.container.querySelector(".empty");
    if (empty) empty.remove();
    if (!this.container.querySelector(`[data-request="${CSS.escape(requestId)}"]`)) {
      this.container.appendChild(userMessage(text, null, requestId, attachments));
    }
    const group = new Group(requestId);
    group.typing(true);
    this.container.appendChild(group.element);
    this.scrollToEnd();
    const payload = { text, streaming: true, ...this.choice() };
    if (this.conversationId) payload.conversation_id = this.conversationId;
    if (attachments.length) payload.attachments = attachments;
    this.turn = { requestId, text, group, attachments };
    this.onBusy(true);
    try {
      this.connection.chat(requestId, payload, (frame) => this.onFrame(this.turn, frame));
    } catch (error) {
      this.fail(this.turn, { error: error.message, code: error.code || "disconnected", retryable: true });
    }
  }

  stop() {
    if (this.turn) this.connection.cancel(this.turn.requestId);
  }

  onFrame(turn, frame) {
    if (!turn || turn !== this.turn) return;
    const stick = this.nearEnd();
    const chunk = frame.chunk || {};
    if (frame.status === "processing" && !chunk.type) {
      const id = chunk.metadata && chunk.metadata.conversation_id;
      if (id && id !== this.conversationId) {
        this.conversationId = id;
        this.onConversation(id);
      }
    } else if (frame.status === "chunk" && chunk.type === "text") {
      turn.group.appendText(chunk.data || "");
    } else if (chunk.type === "tool_execution" && chunk.metadata && chunk.metadata.status === "progress") {
      const tool = this.tools.get(chunk.metadata.call_id);
      if (tool) tool.progress(chunk.metadata);
    } else if (chunk.type === "tool_execution" && chunk.metadata && chunk.metadata.status === "sampling") {
      // The server asked our model on the way: a step of the call, not its end.
      const tool = this.tools.get(chunk.metadata.call_id);
      if (tool) tool.result.textContent = chunk.data || "";
    } else if (chunk.type === "tool_execution") {
      this.toolFrame(turn, chunk);
    } else if (chunk.type === "approval_required") {
      this.askApproval(turn, chunk.metadata || {});
    } else if (chunk.type === "elicitation") {
      this.askElicitation(turn, chunk.metadata || {}, null);
    } else if (chunk.type === "notice" && this.questionNotice(turn, chunk)) {
      // Handled: asked again, or a dialog closed.
    } else if (chunk.type === "notice" && chunk.metadata && chunk.metadata.code === "answer_restarted") {
      // The provider broke off mid-answer: the answer starts again on another.
      turn.group.discardText();
      turn.group.add(h("p", { class: "notice" }, chunk.data || ""));
    } else if (chunk.type === "notice") {
      turn.group.add(h("p", { class: "notice" }, chunk.data || ""));
    } else if (frame.status === "complete") {
      this.closeQuestions(turn);
      const meta = chunk.metadata || {};
      turn.group.typing(false);
      turn.group.footer(meta.model, meta.usage);
      this.finish();
    } else if (frame.status === "error") {
      this.fail(turn, chunk);
    }
    if (stick) this.scrollToEnd();
  }

  toolFrame(turn, chunk) {
    const meta = chunk.metadata || {};
    if (meta.status === "running") {
      const tool = new ToolBlock(meta.tool, meta.server, chunk.data);
      this.tools.set(meta.call_id, tool);
      turn.group.add(tool.element);
    } else {
      const tool = this.tools.get(meta.call_id);
      if (tool) tool.finished(meta.status, chunk.data, meta.duration_ms);
    }
  }

  /** A tool call waiting for the user: a dialog with the call, Allow or Deny. */
  async askApproval(turn, meta) {
    const tool = this.tools.get(meta.call_id);
    if (tool) tool.badge.textContent = "awaiting approval";
    const remember = h("input", { type: "checkbox", id: `remember-${meta.approval_id}` });
    const dialog = h(
      "dialog",
      { class: "approval", "aria-labelledby": "approval-heading" },
      h("form", { method: "dialog" },
        h("h2", { id: "approval-heading" }, "Allow this tool call?"),
        h("p", {}, "The model wants to call ", h("code", {}, meta.tool || "a tool"),
          " on the MCP server ", h("strong", {}, meta.server || "?"), "."),
        h("pre", { class: "arguments" }, JSON.stringify(meta.arguments, null, 2)),
        h("p", { class: "remember" }, remember,
          h("label", { for: `remember-${meta.approval_id}` }, " Same answer for this tool in this conversation")),
        h("div", { class: "actions" },
          h("button", { type: "submit", value: "deny" }, "Deny"),
          h("button", { type: "submit", value: "allow", class: "primary" }, "Allow"))),
    );
    dialog.addEventListener("cancel", (event) => event.preventDefault());
    document.body.appendChild(dialog);
    this.trackQuestion(turn, meta.approval_id, dialog);
    const decision = await showDialog(dialog);
    dialog.remove();
    if (turn !== this.turn || (decision !== "allow" && decision !== "deny")) return;
    try {
      this.connection.approve(turn.requestId, meta.approval_id, decision, remember.checked);
    } catch (error) {
      turn.group.add(h("p", { class: "notice" }, error.message));
    }
  }

  /** A server's question (elicitation): a form built from its schema. */
  async askElicitation(turn, meta, problem) {
    const asking = askQuestion(meta, problem);
    this.trackQuestion(turn, meta.elicitation_id, asking.dialog, meta);
    const answer = await asking.answer;
    if (turn !== this.turn || !answer) return;
    try {
      this.connection.elicit(turn.requestId, meta.elicitation_id, answer.action, answer.content);
    } catch (error) {
      turn.group.add(h("p", { class: "notice" }, error.message));
    }
  }

  /** Keeps a question's dialog (and an elicitation's request, to ask again) by its id. */
  trackQuestion(turn, id, dialog, elicitation) {
    turn.questions = turn.questions || new Map();
    turn.questions.set(id, { dialog, elicitation });
  }

  /** A notice about one of the turn's questions, by its `question_id`: an answer that did
   * not fit an elicitation still open is asked again with what was wrong; a question closed
   * by the server (no answer in time) loses its dialog. Returns whether it was handled. */
  questionNotice(turn, chunk) {
    const meta = chunk.metadata || {};
    const question = turn.questions && turn.questions.get(meta.question_id);
    if (!question) return false;
    if (meta.code === "invalid_answer" && meta.open && question.elicitation) {
      this.askElicitation(turn, question.elicitation, chunk.data);
      return true;
    }
    if (meta.code === "question_closed" || (meta.code === "invalid_answer" && !meta.open)) {
      turn.questions.delete(meta.question_id);
      if (question.dialog.open) question.dialog.close("expired");
      turn.group.add(h("p", { class: "notice" }, chunk.data || ""));
      return true;
    }
    return false;
  }

  /** The turn ended: its open questions cannot be answered any more. */
  closeQuestions(turn) {
    for (const { dialog } of (turn.questions || new Map()).values()) if (dialog.open) dialog.close("expired");
    turn.questions = new Map();
  }

  fail(turn, chunk) {
    this.closeQuestions(turn);
    turn.group.typing(false);
    if (chunk.code === "cancelled") {
      turn.group.mark("cancelled");
    } else {
      turn.group.alert(chunk, HINTS[chunk.code]);
      turn.group.mark("failed");
    }
    this.offerRetry(turn.group, turn.text, turn.requestId, turn.attachments);
    this.finish();
  }

  /** A Retry button under an answer that did not finish. */
  offerRetry(group, text, requestId, attachments = []) {
    const retry = h("button", { type: "button", class: "retry" }, "Retry");
    retry.addEventListener("click", () => {
      if (this.busy) return;
      group.element.remove();
      // The same request id: the server answers a cancelled or failed turn anew without
      // storing the message twice, and replays one that did finish meanwhile.
      this.send(text, requestId, attachments);
    });
    group.footerElement().appendChild(retry);
  }

  finish() {
    this.turn = null;
    this.onBusy(false);
    this.onTurnEnd();
  }
}

function renderSegment(segment) {
  const fresh = renderMarkdown(segment.text);
  segment.element.replaceWith(fresh);
  segment.element = fresh;
}

function userMessage(text, id, requestId, attachments) {
  const chips = (attachments || []).map((a) =>
    h("span", { class: "chip", title: `${a.uri} (${a.server})` }, a.uri.split("/").pop() || a.uri));
  return h(
    "article",
    { class: "message user", id: id ? `m-${id}` : null, dataset: requestId ? { request: requestId } : null },
    h("div", { class: "role" }, "You"),
    h("div", { class: "body" }, text),
    chips.length ? h("div", { class: "chips", "aria-label": "Attached" }, chips) : null,
  );
}

/** One assistant answer: text segments and tool blocks in the order they came. */
class Group {
  constructor(requestId) {
    this.requestId = requestId;
    this.content = h("div", { class: "content" });
    this.element = h("article", { class: "message assistant" }, h("div", { class: "role" }, "Assistant"), this.content);
    this.segment = null;
    this.pending = false;
  }

  add(element) {
    if (this.segment) renderSegment(this.segment);
    this.segment = null;
    this.content.appendChild(element);
  }

  appendText(text) {
    if (!this.segment) {
      this.segment = { text: "", element: h("div") };
      this.content.appendChild(this.segment.element);
    }
    this.segment.text += text;
    if (!this.pending) {
      this.pending = true;
      requestAnimationFrame(() => {
        this.pending = false;
        this.render();
      });
    }
  }

  /** Drops the text of the reply being streamed (earlier rounds and tool blocks stay). */
  discardText() {
    if (!this.segment) return;
    this.segment.element.remove();
    this.segment = null;
  }

  setText(text) {
    this.appendText(text);
    this.render();
  }

  render() {
    if (this.segment) renderSegment(this.segment);
  }

  typing(on) {
    if (!on) this.render();
    this.element.classList.toggle("typing", on);
  }

  mark(status) {
    if (this.pending) this.render();
    // Partial only when something was answered: text or a tool block.
    const answered = this.content.querySelector(".markdown, details.tool") !== null || (this.segment && this.segment.text);
    const words = answered
      ? { cancelled: "Stopped: the answer is partial", failed: "Failed: the answer is partial" }
      : { cancelled: "Stopped before any answer", failed: "Failed before any answer" };
    this.footerElement().prepend(h("span", { class: `state ${status}` }, words[status] || status));
  }

  alert(chunk, hint) {
    const retryAfter = chunk.retry_after ? ` Try again in ${Math.ceil(chunk.retry_after)} s.` : "";
    this.content.appendChild(
      h("div", { class: "alert", role: "alert" }, `${chunk.error || "The request failed."}${retryAfter}`,
        hint ? h("span", { class: "hint" }, hint) : null),
    );
  }

  footerElement() {
    if (!this.footerNode) {
      this.footerNode = h("div", { class: "footer" });
      this.element.appendChild(this.footerNode);
    }
    return this.footerNode;
  }

  footer(model, usage) {
    const parts = [];
    if (model) parts.push(model);
    if (usage && usage.total_tokens) parts.push(`${usage.total_tokens} tokens`);
    if (parts.length) this.footerElement().appendChild(h("span", { class: "meta" }, parts.join(" · ")));
  }
}

/** A tool call: name, server, arguments, then its state, duration and result. */
class ToolBlock {
  constructor(name, server, argumentsText) {
    this.badge = h("span", { class: "badge" }, "running");
    this.duration = h("span", { class: "duration" });
    this.result = h("pre", { class: "result" }, "…");
    this.element = h(
      "details",
      { class: "tool running" },
      h("summary", {}, h("span", { class: "name" }, name || "tool"),
        server ? h("span", { class: "server" }, `on ${server}`) : null, this.badge, this.duration),
      h("div", { class: "detail" }, h("h4", {}, "Arguments"), h("pre", {}, pretty(argumentsText)),
        h("h4", {}, "Result"), this.result),
    );
  }

  progress({ progress, total, message }) {
    const share = total ? ` ${Math.round((progress / total) * 100)}%` : ` ${progress}`;
    this.badge.textContent = `running${share}`;
    if (message) this.result.textContent = message;
  }

  finished(status, summary, durationMs) {
    this.element.classList.remove("running");
    this.element.classList.add(status);
    this.badge.textContent = status === "ok" ? "done" : status;
    if (durationMs !== undefined && durationMs !== null) this.duration.textContent = `${durationMs} ms`;
    this.result.textContent = summary || "(empty)";
  }

  stored(content) {
    const failed = /^(error|tool error)/i.test(content || "");
    this.finished(failed ? "error" : "ok", cut(content), null);
  }
}

function pretty(text) {
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    return text || "";
  }
}

function cut(text) {
  const value = text || "";
  return value.length > RESULT_CHARS ? `${value.slice(0, RESULT_CHARS)}…` : value;
}

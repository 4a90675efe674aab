// The chat page: signs in when the server wants a key, opens the socket, and wires the
// sidebar, the conversation view, the model picker and the dialogs. The open conversation is
// in the URL (#/c/ID), so a reload reopens it.

import { $, showDialog } from "./dom.js";
import { Connection } from "./connection.js";
import { ChatView } from "./chat.js";
import { Sidebar } from "./sidebar.js";
import { openMemories } from "./memories.js";
import { Attachments, pickPrompt, pickResources } from "./library.js";
import { openStatus } from "./status.js";

const ui = {
  app: $("#app"), banner: $("#banner"), title: $("#conversation-title"), model: $("#model"),
  message: $("#message"), composer: $("#composer"), send: $("#send"), stop: $("#stop"),
  connection: $("#connection"), sidebar: $("#sidebar"),
};

async function session() {
  const response = await fetch("/api/session", { headers: { Accept: "application/json" } });
  if (response.ok) return response.json();
  if (response.status === 401) return null;
  throw new Error(`the server answered ${response.status} to /api/session`);
}

/** Asks for a key until the server accepts one. */
async function signIn() {
  const dialog = $("#login");
  const input = $("#api-key");
  const error = $("#login-error");
  for (;;) {
    await showDialog(dialog);
    const response = await fetch("/api/login", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ key: input.value }),
    });
    if (response.ok) return session();
    const body = await response.json().catch(() => ({}));
    error.textContent = (body.error && body.error.message) || `Sign-in failed (${response.status}).`;
    if (response.status === 401) error.textContent = "That key is not valid. Check it and try again.";
    error.hidden = false;
    input.select();
  }
}

function showBanner(text) {
  ui.banner.textContent = text;
  ui.banner.hidden = !text;
}

function routeId() {
  const match = /^#\/c\/(.+)$/.exec(location.hash);
  return match ? decodeURIComponent(match[1]) : null;
}

async function main() {
  let me = await session();
  if (!me) me = await signIn();
  ui.app.hidden = false;
  $("#status").hidden = me.role !== "admin";
  $("#logout").hidden = !me.auth_required;

  const connection = new Connection("/ws/chat");
  const chat = new ChatView({
    connection,
    container: $("#messages"),
    choice: () => {
      const value = ui.model.value;
      if (!value) return {};
      const [provider, model] = JSON.parse(value);
      return { provider, model };
    },
    onConversation: (id) => {
      history.replaceState(null, "", `#/c/${encodeURIComponent(id)}`);
      sidebar.select(id);
    },
    onTurnEnd: async () => {
      await sidebar.refresh().catch(() => {});
      sidebar.select(chat.conversationId);
      showTitle();
    },
    onBusy: (busy) => {
      ui.send.hidden = busy;
      ui.stop.hidden = !busy;
      if (!busy) ui.message.focus();
    },
  });
  const sidebar = new Sidebar({
    connection,
    list: $("#conversation-list"),
    searchForm: $("#search-form"),
    searchInput: $("#search"),
    onOpen: (id, messageId) => open(id, messageId),
  });

  const showTitle = () => {
    const id = chat.conversationId;
    ui.title.textContent = id ? sidebar.title(id) || "Untitled" : "New chat";
    document.title = id ? `${ui.title.textContent} · MCP Platform` : "MCP Platform";
  };

  async function open(id, messageId) {
    ui.sidebar.classList.remove("open");
    if (location.hash !== `#/c/${encodeURIComponent(id)}`) {
      history.pushState(null, "", `#/c/${encodeURIComponent(id)}`);
    }
    sidebar.select(id);
    try {
      await chat.open(id, { jumpTo: messageId });
      showTitle();
    } catch (failure) {
      showBanner(failure.code === "not_found" ? "That conversation does not exist (or is not yours)." : failure.message);
      chat.reset();
    }
  }

  async function route() {
    const id = routeId();
    if (!id) {
      chat.reset();
      sidebar.select(null);
      showTitle();
    } else if (id !== chat.conversationId) {
      await open(id);
    }
  }

  async function loadModels() {
    const chunk = await connection.request("list_models", {});
    const { providers, default_provider: active } = chunk.metadata;
    const current = ui.model.value;
    ui.model.replaceChildren();
    const chosen = providers.find((p) => p.name === active);
    const label = chosen ? `Default (${chosen.name} · ${chosen.default_model})` : "Default model";
    ui.model.append(new Option(label, ""));
    for (const provider of providers) {
      const group = document.createElement("optgroup");
      group.label = provider.configured ? provider.name : `${provider.name} (no key)`;
      for (const model of provider.models) {
        group.append(new Option(model, JSON.stringify([provider.name, model])));
      }
      ui.model.append(group);
    }
    ui.model.value = current;
    if (chunk.metadata.found_locally) {
      showBanner(`Using ${chunk.metadata.found_locally}, found on this machine (no provider was chosen).`);
    } else if (chosen && !chosen.configured) {
      showBanner(`The provider “${chosen.name}” has no API key: set ${chosen.key_variable} in the server's ` +
        "environment and restart it, or point a provider at a local model server (see the README).");
    }
  }

  connection.addEventListener("online", async (event) => {
    ui.connection.textContent = "";
    ui.connection.classList.remove("offline");
    showBanner("");
    try {
      await Promise.all([loadModels(), sidebar.refresh()]);
      if (event.detail.reopened && chat.conversationId && !chat.busy) await open(chat.conversationId);
      else await route();
      if (!document.body.dataset.ready) {
        // Navigation to usable input: the socket is open and the conversation shown.
        performance.mark("usable");
        document.body.dataset.ready = "true";
      }
    } catch (failure) {
      showBanner(failure.message);
    }
  });
  connection.addEventListener("offline", async (event) => {
    ui.connection.classList.add("offline");
    if (event.detail.code === 4401) {
      ui.connection.textContent = "Signed out: the key was revoked or keys became required. Reload to sign in.";
      return;
    }
    ui.connection.textContent = connection.everOpened
      ? "Disconnected from the server; reconnecting…"
      : "Cannot open the chat connection; retrying… (the server's log says why it refused)";
    // A refused upgrade looks like any dropped socket: an expired session means signing in.
    if ((await session().catch(() => me)) === null) {
      connection.stop();
      location.reload();
    }
  });

  window.addEventListener("hashchange", route);
  document.addEventListener("conversation-updated", showTitle);
  document.addEventListener("page-error", (event) => showBanner(event.detail));

  $("#new-chat").addEventListener("click", () => {
    ui.sidebar.classList.remove("open");
    if (location.hash !== "#/") location.hash = "#/";
    else route();
    ui.message.focus();
  });
  $("#open-sidebar").addEventListener("click", () => ui.sidebar.classList.add("open"));
  $("#close-sidebar").addEventListener("click", () => ui.sidebar.classList.remove("open"));
  $("#settings").addEventListener("click", () => {
    if (chat.conversationId) sidebar.edit(chat.conversationId);
    else showBanner("Send a first message: settings belong to a conversation.");
  });
  $("#memories").addEventListener("click", () => openMemories(connection));
  $("#status").addEventListener("click", () => openStatus());
  $("#logout").addEventListener("click", async () => {
    await fetch("/api/logout", { method: "POST" });
    connection.stop();
    location.reload();
  });

  const attachments = new Attachments($("#attachments"));
  $("#attach").addEventListener("click", () => pickResources(connection, attachments));
  $("#prompts").addEventListener("click", async () => {
    const text = await pickPrompt(connection);
    if (text === null) return;
    ui.message.value = ui.message.value ? `${ui.message.value}\n\n${text}` : text;
    grow();
    ui.message.focus();
  });

  const submit = () => {
    const text = ui.message.value;
    if (!text.trim() || chat.busy) return;
    ui.message.value = "";
    grow();
    showBanner("");
    chat.send(text, undefined, attachments.take());
  };
  const grow = () => {
    ui.message.style.height = "auto";
    ui.message.style.height = `${ui.message.scrollHeight + 2}px`;
  };
  ui.composer.addEventListener("submit", (event) => {
    event.preventDefault();
    submit();
  });
  ui.message.addEventListener("input", grow);
  ui.message.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      submit();
    }
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && chat.busy && !document.querySelector("dialog[open]")) chat.stop();
  });
  ui.stop.addEventListener("click", () => chat.stop());

  connection.connect();
  ui.message.focus();
}

main().catch((failure) => {
  document.body.textContent = `The page could not start: ${failure.message}`;
});

// What the MCP servers offer besides tools: resources to attach to the next message, and
// prompts to start one from. Attached resources show as chips above the message box until the
// message is sent (the server reads them then); a prompt's text goes into the message box.

import { h, clear, showDialog } from "./dom.js";

/** The most resources one message may name (the server refuses more). */
const MAX_ATTACHMENTS = 8;

/** The resources picked for the next message, shown as removable chips. */
export class Attachments {
  constructor(chips) {
    this.chips = chips;
    this.items = [];
  }

  get full() {
    return this.items.length >= MAX_ATTACHMENTS;
  }

  has(resource) {
    return this.items.some((r) => r.uri === resource.uri && r.server === resource.server);
  }

  add(resource) {
    if (this.full || this.has(resource)) return;
    this.items.push(resource);
    this.render();
  }

  /** The picked resources as `payload.attachments`, and the chips cleared. */
  take() {
    const list = this.items.map(({ uri, server }) => ({ uri, server }));
    this.items = [];
    this.render();
    return list;
  }

  render() {
    clear(this.chips);
    this.chips.hidden = this.items.length === 0;
    for (const resource of this.items) {
      const label = resource.title || resource.name || resource.uri;
      const remove = h("button", { type: "button", class: "icon", "aria-label": `Remove ${label}` }, "✕");
      remove.addEventListener("click", () => {
        this.items = this.items.filter((r) => r !== resource);
        this.render();
      });
      this.chips.appendChild(h("span", { class: "chip", title: `${resource.uri} (${resource.server})` },
        label, remove));
    }
  }
}

/** Lists the servers' resources (paged); each can be attached to the next message. */
export async function pickResources(connection, attachments) {
  const list = h("ul", { class: "library-list", "aria-live": "polite" });
  const error = h("p", { class: "error", role: "alert", hidden: true });
  const more = h("button", { type: "button", class: "link", hidden: true }, "Show more");
  const dialog = h("dialog", { class: "library", "aria-labelledby": "resources-heading" },
    h("h2", { id: "resources-heading" }, "Attach a resource"),
    h("p", {}, "What the MCP servers offer to read. An attached resource is read when the message is sent, " +
      "and the model sees it with the message."),
    error, list, more,
    h("form", { method: "dialog", class: "actions" }, h("button", { type: "submit" }, "Done")));
  document.body.appendChild(dialog);

  let cursor = null;
  const syncs = [];
  const row = (resource) => {
    const attach = h("button", { type: "button" }, "Attach");
    const sync = () => {
      attach.disabled = attachments.has(resource) || attachments.full;
      attach.textContent = attachments.has(resource) ? "Attached" : "Attach";
    };
    attach.addEventListener("click", () => {
      attachments.add(resource);
      for (const each of syncs) each();
    });
    syncs.push(sync);
    sync();
    return h("li", {},
      h("span", { class: "text" }, resource.title || resource.name,
        h("span", { class: "meta" }, [resource.server, resource.uri, resource.mime_type].filter(Boolean).join(" · "))),
      attach);
  };
  const load = async () => {
    try {
      const chunk = await connection.request("list_resources", cursor ? { cursor } : {});
      cursor = chunk.metadata.next_cursor;
      more.hidden = !cursor;
      for (const resource of chunk.metadata.resources) list.appendChild(row(resource));
      if (!list.childElementCount) list.appendChild(h("li", {}, "No MCP server offers resources."));
    } catch (failure) {
      error.textContent = failure.message;
      error.hidden = false;
    }
  };
  more.addEventListener("click", load);
  await load();
  await showDialog(dialog);
  dialog.remove();
}

/** Lists the servers' prompts; resolves with the chosen one's text (arguments asked), or null. */
export async function pickPrompt(connection) {
  const list = h("ul", { class: "library-list", "aria-live": "polite" });
  const error = h("p", { class: "error", role: "alert", hidden: true });
  const form = h("form", { class: "prompt-form", hidden: true });
  const dialog = h("dialog", { class: "library", "aria-labelledby": "prompts-heading" },
    h("h2", { id: "prompts-heading" }, "Start from a prompt"),
    error, list, form,
    h("form", { method: "dialog", class: "actions" }, h("button", { type: "submit", value: "" }, "Close")));
  document.body.appendChild(dialog);

  let chosen = null;
  const fill = async (prompt, values) => {
    try {
      const chunk = await connection.request("get_prompt", { name: prompt.name, server: prompt.server, arguments: values });
      chosen = chunk.metadata.messages.map((m) => m.text).join("\n\n");
      dialog.close("used");
    } catch (failure) {
      error.textContent = failure.message;
      error.hidden = false;
    }
  };
  const askArguments = (prompt) => {
    clear(form);
    const inputs = prompt.arguments.map((argument, n) => {
      const id = `prompt-arg-${n}`;
      const input = h("input", { id, name: argument.name, required: argument.required, autocomplete: "off" });
      form.append(h("label", { for: id }, argument.required ? `${argument.name} *` : argument.name), input,
        argument.description ? h("span", { class: "help" }, argument.description) : null);
      return input;
    });
    form.append(h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Use prompt")));
    form.hidden = false;
    list.hidden = true;
    form.onsubmit = (event) => {
      event.preventDefault();
      const values = Object.create(null);
      for (const input of inputs) if (input.value) values[input.name] = input.value;
      fill(prompt, values);
    };
    if (inputs.length) inputs[0].focus();
  };
  try {
    const chunk = await connection.request("list_prompts", { limit: 500 });
    for (const prompt of chunk.metadata.prompts) {
      const use = h("button", { type: "button" }, "Use");
      use.addEventListener("click", () => (prompt.arguments.length ? askArguments(prompt) : fill(prompt, {})));
      list.appendChild(h("li", {},
        h("span", { class: "text" }, prompt.title || prompt.name,
          h("span", { class: "meta" }, [prompt.server, prompt.description].filter(Boolean).join(" · "))),
        use));
    }
    if (!list.childElementCount) list.appendChild(h("li", {}, "No MCP server offers prompts."));
  } catch (failure) {
    error.textContent = failure.message;
    error.hidden = false;
  }
  await showDialog(dialog);
  dialog.remove();
  return chosen;
}

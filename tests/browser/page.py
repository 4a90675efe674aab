"""The chat page, driven in Chromium as a person would use it. One scenario per run
($SCENARIO); tests/e2e/page_browser.rs starts the server and the fake provider, scripts the
fake's answers, runs this, and checks what it reports (and the server's side).

Every scenario saves screenshots under $SCREENSHOT_DIR and reports the console errors,
page errors and dialogs harness.py collected."""

import json
import os
import time

import harness
from playwright.sync_api import expect

SCENARIO = harness.SCENARIO
BASE = harness.BASE_URL.rstrip("/")


def open_page(path="/"):
    page = harness.start()
    page.goto(BASE + path)
    page.wait_for_selector("body[data-ready=true]")
    return page


def open_through_proxy():
    """The page with its sockets passed through a proxy the scenario can cut; the page and the
    list of proxied sockets (newest last)."""
    routes = []

    def proxy(route):
        route.connect_to_server()
        routes.append(route)

    page = harness.start()
    page.route_web_socket("**/ws/chat", proxy)
    page.goto(BASE + "/")
    page.wait_for_selector("body[data-ready=true]")
    return page, routes


def message_box(page):
    return page.get_by_role("textbox", name="Message")


def send(page, text):
    box = message_box(page)
    box.fill(text)
    box.press("Enter")


def last_answer(page):
    return page.locator("article.message.assistant").last


def wait_done(page):
    """Until the last answer stops typing (complete, error or cancelled)."""
    page.wait_for_function(
        "() => { const a = [...document.querySelectorAll('article.message.assistant')].pop();"
        " return a && !a.classList.contains('typing'); }"
    )


def stream():
    """Type, press Enter, watch the answer grow in pieces; then reload and find it again."""
    page = open_page()
    send(page, "Tell me about streams")
    # Sample the answer's text as it grows, in the page (no round trip per sample).
    seen = page.evaluate(
        """() => new Promise((resolve) => {
            const seen = [];
            const tick = () => {
              const answer = [...document.querySelectorAll('article.message.assistant')].pop();
              const text = answer ? answer.querySelector('.content').innerText : '';
              if (text && seen[seen.length - 1] !== text) seen.push(text);
              if (answer && !answer.classList.contains('typing')) resolve(seen);
              else requestAnimationFrame(tick);
            };
            tick();
        })"""
    )
    harness.screenshot("stream-answered")
    hash_after = page.evaluate("location.hash")
    title_after = page.locator("#conversation-title").inner_text()
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    page.wait_for_selector("article.message.assistant")
    sidebar = [t.inner_text() for t in page.locator("#conversation-list .item .title").all()]
    history = [m.inner_text() for m in page.locator("#messages article.message").all()]
    current = page.locator("#conversation-list .item.current .title").all_inner_texts()
    harness.screenshot("stream-reloaded")
    harness.finish(
        {
            "seen": seen,
            "hash": hash_after,
            "title": title_after,
            "reloaded_hash": page.evaluate("location.hash"),
            "sidebar": sidebar,
            "current": current,
            "history": history,
        }
    )


def tool():
    """A turn that calls a tool shows a block with the tool, its server and its result."""
    page = open_page()
    send(page, "Echo pong with the tool")
    wait_done(page)
    block = page.locator("details.tool").first
    block.locator("summary").click()
    expect(block.locator(".result")).to_be_visible()
    harness.screenshot("tool-call")
    live = {
        "classes": block.get_attribute("class"),
        "name": block.locator(".name").inner_text(),
        "server": block.locator(".server").inner_text(),
        "badge": block.locator(".badge").inner_text(),
        "duration": block.locator(".duration").inner_text(),
        "arguments": block.locator(".detail pre").first.inner_text(),
        "result": block.locator(".result").inner_text(),
        "answer": last_answer(page).locator(".markdown").last.inner_text(),
        "table_cells": last_answer(page).locator("td").all_inner_texts(),
        "code": last_answer(page).locator("pre code").inner_text(),
        "hash": page.evaluate("location.hash"),
    }
    # Reopened from the server's history (#/c/ID), as after a reload or from the list.
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    stored = page.locator("details.tool").first
    expect(stored).to_be_attached()
    stored.locator("summary").click()
    expect(stored.locator(".result")).to_be_visible()
    harness.screenshot("tool-call-reopened")
    live["reopened"] = {
        "hash": page.evaluate("location.hash"),
        "name": stored.locator(".name").inner_text(),
        "badge": stored.locator(".badge").inner_text(),
        "arguments": stored.locator(".detail pre").first.inner_text(),
        "result": stored.locator(".result").inner_text(),
        "answer": last_answer(page).locator(".markdown").last.inner_text(),
    }
    harness.finish(live)


def hostile():
    """Model output with HTML and a javascript: link shows as text; nothing runs."""
    page = open_page()
    send(page, "Say something nasty")
    wait_done(page)
    answer = last_answer(page)
    # Click the neutralised link: still nothing may happen.
    links = answer.locator(".unsafe-link")
    if links.count():
        links.first.click()
    page.wait_for_timeout(300)
    harness.screenshot("hostile-output")
    harness.finish(
        {
            "text": answer.locator(".content").inner_text(),
            "images": answer.locator("img").count(),
            "scripts": answer.locator("script").count(),
            "javascript_links": page.evaluate(
                "() => [...document.querySelectorAll('a')]"
                ".filter(a => a.href.toLowerCase().startsWith('javascript')).length"
            ),
            "anchors": answer.locator("a").count(),
            "unsafe_links": links.count(),
            "pwned": page.evaluate("() => window.__pwned === true"),
        }
    )


def login():
    """With keys required: the page asks for one, refuses a wrong one, accepts a right one."""
    page = harness.start()
    page.goto(BASE + "/")
    dialog = page.get_by_role("dialog", name="Sign in")
    expect(dialog).to_be_visible()
    harness.screenshot("login-asked")
    key = page.get_by_label("API key")
    key.fill("mcpp_wrong_key_0000000000000000")
    key.press("Enter")
    error = page.locator("#login-error")
    expect(error).to_be_visible()
    refused = error.inner_text()
    harness.screenshot("login-refused")
    key.fill(os.environ["API_KEY"])
    key.press("Enter")
    page.wait_for_selector("body[data-ready=true]")
    expect(message_box(page)).to_be_visible()
    send(page, "Hello after login")
    wait_done(page)
    harness.screenshot("login-accepted")
    answer = last_answer(page).locator(".content").inner_text()
    logout_visible = page.locator("#logout").is_visible()
    status_visible = page.locator("#status").is_visible()
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("dialog", name="Sign in")).to_be_visible()
    harness.finish(
        {
            "refused": refused,
            "answer": answer,
            "logout_visible": logout_visible,
            "status_visible": status_visible,
            "after_logout": page.evaluate("fetch('/api/session').then((r) => r.status)"),
        }
    )


def stop():
    """Stop (Esc) cancels a slow answer; the partial answer stays, marked, also after reload."""
    page = open_page()
    send(page, "Write slowly")
    page.wait_for_function(
        "() => { const a = [...document.querySelectorAll('article.message.assistant')].pop();"
        " return a && a.querySelector('.markdown') && a.innerText.includes('w2'); }"
    )
    message_box(page).press("Escape")
    wait_done(page)
    answer = last_answer(page)
    partial = answer.locator(".content").inner_text()
    state = answer.locator(".state").inner_text()
    retry = answer.locator("button.retry").count()
    harness.screenshot("stop-stopped")
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    page.wait_for_selector("article.message.assistant")
    harness.finish(
        {
            "partial": partial,
            "state": state,
            "retry": retry,
            "reloaded_state": last_answer(page).locator(".state").all_inner_texts(),
            "reloaded_retry": last_answer(page).locator("button.retry").count(),
            "reloaded_text": last_answer(page).locator(".content").inner_text(),
        }
    )


def long_conversation():
    """A stored conversation of many messages: time to show it, then frame times while
    scrolling it from the top to the bottom."""
    conversation = os.environ["CONVERSATION_ID"]
    page = harness.start()
    page.add_init_script(
        """window.__longTasks = [];
        new PerformanceObserver((list) => {
          for (const entry of list.getEntries()) window.__longTasks.push(entry.duration);
        }).observe({type: 'longtask', buffered: true});"""
    )
    started = time.monotonic()
    page.goto(BASE + "/")
    page.wait_for_selector("body[data-ready=true]")
    usable_ms = page.evaluate("performance.getEntriesByName('usable')[0].startTime")
    opened = time.monotonic()
    page.goto(BASE + "/#/c/" + conversation)
    expected = int(os.environ["MESSAGES"])
    page.wait_for_selector("#messages article.message")
    # Load every page of history (the view loads older pages on demand).
    messages = page.locator("#messages article.message")
    while (count := messages.count()) < expected:
        button = page.locator("button.earlier")
        if not button.is_visible():
            break
        button.click()
        page.wait_for_function(
            f"() => document.querySelectorAll('#messages article.message').length > {count}"
        )
    shown_ms = (time.monotonic() - opened) * 1000
    count = page.locator("#messages article.message").count()
    frames = page.evaluate(
        """() => new Promise((resolve) => {
            const box = document.querySelector('#messages');
            box.scrollTop = 0;
            const times = [];
            let last = performance.now();
            const step = () => {
              const now = performance.now();
              times.push(now - last);
              last = now;
              if (box.scrollTop + box.clientHeight >= box.scrollHeight - 1) resolve(times);
              else { box.scrollTop += 400; requestAnimationFrame(step); }
            };
            requestAnimationFrame(step);
        })"""
    )
    harness.screenshot("long-conversation")
    frames.sort()
    harness.finish(
        {
            "messages": count,
            "usable_ms": usable_ms,
            "shown_ms": shown_ms,
            "frames": len(frames),
            "frame_p50_ms": frames[len(frames) // 2] if frames else None,
            "frame_max_ms": frames[-1] if frames else None,
            "long_tasks": page.evaluate("window.__longTasks"),
            "total_ms": (time.monotonic() - started) * 1000,
        }
    )


def narrow():
    """At 360 px wide: the message box and Send fit, the list opens from a button."""
    page = harness.start()
    page.set_viewport_size({"width": 360, "height": 740})
    page.goto(BASE + "/")
    page.wait_for_selector("body[data-ready=true]")
    # Shift+Enter is a new line, not a send.
    message_box(page).type("first line")
    message_box(page).press("Shift+Enter")
    message_box(page).type("second line")
    typed = message_box(page).input_value()
    sent = page.locator("article.message").count()
    box = message_box(page).bounding_box()
    send_button = page.get_by_role("button", name="Send").bounding_box()
    page.get_by_role("button", name="Conversations").click()
    sidebar_visible = page.locator("#sidebar").is_visible()
    harness.screenshot("narrow")
    harness.finish(
        {
            "box": box,
            "send": send_button,
            "page_width": page.evaluate("document.documentElement.scrollWidth"),
            "sidebar_visible": sidebar_visible,
            "typed": typed,
            "sent": sent,
        }
    )


def ask(page, text):
    send(page, text)
    wait_done(page)


def manage():
    """Search jumps to a message; a conversation is renamed, given a prompt, and deleted."""
    page = open_page()
    ask(page, "Sourdough starter tips")
    sourdough = page.evaluate("location.hash")
    page.get_by_role("button", name="New chat").click()
    ask(page, "Trip to Rome")
    # History search: messages are indexed a moment after their turn.
    search = page.get_by_role("searchbox", name="Search history")
    hits = []
    for _ in range(50):
        search.fill("flour water")
        search.press("Enter")
        page.wait_for_selector("#conversation-list .heading")
        page.wait_for_function(
            "() => !document.querySelector('#conversation-list .heading').innerText.startsWith('Searching')"
        )
        hits = page.locator("#conversation-list .hit").all_inner_texts()
        if hits:
            break
        page.wait_for_timeout(200)
    page.locator("#conversation-list .hit").first.click()
    page.wait_for_selector("article.message.highlight")
    highlighted = page.locator("article.message.highlight").inner_text()
    jumped = page.evaluate("location.hash")
    harness.screenshot("manage-search")
    search.fill("")
    search.dispatch_event("input")
    page.wait_for_selector("#conversation-list .item")
    # Rename and prompt, from the open conversation's settings button.
    page.get_by_role("button", name="Conversation settings").click()
    dialog = page.get_by_role("dialog", name="Conversation settings")
    dialog.get_by_label("Title").fill("Bread")
    dialog.get_by_label("System prompt for this conversation").fill("Be brief.")
    harness.screenshot("manage-settings")
    dialog.get_by_role("button", name="Save").click()
    expect(page.locator("#conversation-title")).to_have_text("Bread")
    # Delete the other one.
    page.get_by_role("button", name="Delete Trip to Rome").click()
    confirm = page.get_by_role("dialog", name="Delete this conversation?")
    confirm.get_by_role("button", name="Delete").click()
    expect(page.locator("#conversation-list .item")).to_have_count(1)
    harness.screenshot("manage-after")
    harness.finish(
        {
            "sourdough": sourdough,
            "hits": hits,
            "jumped": jumped,
            "highlighted": highlighted,
            "titles": page.locator("#conversation-list .item .title").all_inner_texts(),
        }
    )


def admin():
    """Memories are listed and deleted; the status view draws its charts and tables."""
    page = open_page()
    ask(page, "Remember that I drink green tea")
    page.get_by_role("button", name="Memories").click()
    dialog = page.get_by_role("dialog", name="Memories")
    expect(dialog.locator(".memory-list li")).to_have_count(2)
    listed = dialog.locator(".memory-list .text").all_inner_texts()
    dialog.get_by_label("Search memories").fill("green tea")
    dialog.get_by_label("Search memories").press("Enter")
    page.wait_for_function(
        "() => document.querySelector('.memory-list .meta') &&"
        " document.querySelector('.memory-list .meta').innerText.includes('score')"
    )
    found = dialog.locator(".memory-list .text").first.inner_text()
    harness.screenshot("admin-memories")
    dialog.locator(".memory-list li").first.get_by_role("button").click()
    expect(dialog.locator(".memory-list li")).to_have_count(1)
    dialog.get_by_role("button", name="Close").click()
    page.get_by_role("button", name="Status").click()
    status = page.get_by_role("dialog", name="Server status")
    expect(status.locator("canvas")).to_have_count(6)
    page.wait_for_timeout(3500)  # a second sample, for the rates
    drawn = page.evaluate(
        """() => [...document.querySelectorAll('dialog canvas')].map((c) => {
            const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let inked = 0;
            for (let i = 3; i < data.length; i += 4) if (data[i] > 0) inked++;
            return inked;
        })"""
    )
    harness.screenshot("admin-status")
    harness.finish(
        {
            "listed": listed,
            "found": found,
            "drawn": drawn,
            "providers": status.locator("table").nth(0).inner_text(),
            "mcp": status.locator("table").nth(1).inner_text(),
            "now": status.locator(".chart .now").all_inner_texts(),
        }
    )


def reconnect():
    """The socket drops under the page: it says so, reconnects, reopens the conversation,
    and the next message goes to the same conversation."""
    page, routes = open_through_proxy()
    ask(page, "First question")
    before = page.evaluate("location.hash")
    routes[-1].close(code=1001, reason="dropped")
    page.wait_for_selector("#connection.offline")
    offline = page.locator("#connection").inner_text()
    # Back online: the line clears and the conversation is shown again.
    page.wait_for_function("() => !document.querySelector('#connection').classList.contains('offline')")
    page.wait_for_selector("article.message.assistant")
    ask(page, "Second question")
    harness.screenshot("reconnect")
    harness.finish(
        {
            "sockets": len(routes),
            "offline": offline,
            "before": before,
            "after": page.evaluate("location.hash"),
            "messages": page.locator("#messages article.message").count(),
            "answer": last_answer(page).locator(".content").inner_text(),
        }
    )


def unconfigured():
    """No provider key: the page says what to set, and a message's error says it too."""
    page = open_page()
    banner = page.locator("#banner").inner_text()
    ask(page, "Hello?")
    harness.screenshot("unconfigured")
    harness.finish(
        {
            "banner": banner,
            "alert": last_answer(page).locator(".alert").inner_text(),
            "state": last_answer(page).locator(".state").inner_text(),
        }
    )


def approval():
    """A tool whose server asks: a dialog names the call; Allow runs it, Deny does not."""
    page = open_page()
    send(page, "Echo pong, with permission")
    dialog = page.get_by_role("dialog", name="Allow this tool call?")
    expect(dialog).to_be_visible()
    asked = dialog.inner_text()
    harness.screenshot("approval-asked")
    dialog.get_by_role("button", name="Allow").click()
    wait_done(page)
    allowed = page.locator("details.tool").last.get_attribute("class")
    send(page, "And again")
    dialog = page.get_by_role("dialog", name="Allow this tool call?")
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name="Deny").click()
    wait_done(page)
    denied = page.locator("details.tool").last
    harness.screenshot("approval-denied")
    harness.finish(
        {
            "asked": asked,
            "allowed": allowed,
            "denied": denied.get_attribute("class"),
            "denied_badge": denied.locator(".badge").inner_text(),
        }
    )


def approval_expires():
    """No answer in time: the server closes the question and the page closes its dialog."""
    page = open_page()
    send(page, "Echo pong, with permission")
    dialog = page.get_by_role("dialog", name="Allow this tool call?")
    expect(dialog).to_be_visible()
    expect(page.locator("dialog.approval")).to_have_count(0, timeout=15000)
    # Closed by the server's notice while the turn still runs (the next reply is slow), not
    # by the turn's end.
    still_typing = page.locator("article.message.assistant.typing").count()
    wait_done(page)
    denied = page.locator("details.tool").last
    harness.finish(
        {
            "still_typing": still_typing,
            "open_dialogs": page.locator("dialog[open]").count(),
            "denied_badge": denied.locator(".badge").inner_text(),
            "notices": page.locator("p.notice").all_inner_texts(),
        }
    )


def question():
    """A server's question (elicitation) as a form; its answer reaches the tool; progress."""
    page = open_page()
    send(page, "Ask me something")
    dialog = page.get_by_role("dialog", name="A tool asks")
    expect(dialog).to_be_visible()
    asked = dialog.inner_text()
    # The required name; the integer field has bounds.
    dialog.locator("input[id$='-name']").fill("Ada Lovelace")
    dialog.locator("input[id$='-integer']").fill("7")
    harness.screenshot("question-asked")
    dialog.get_by_role("button", name="Send").click()
    wait_done(page)
    block = page.locator("details.tool").last
    block.locator("summary").click()
    harness.screenshot("question-answered")
    harness.finish(
        {
            "asked": asked,
            "classes": block.get_attribute("class"),
            "result": block.locator(".result").inner_text(),
        }
    )


def library():
    """Attach a resource from the list, fill the message from a prompt, send: the answer
    comes, the message shows what it carried, and a reload still shows it."""
    page = open_page()
    page.get_by_role("button", name="Attach a resource").click()
    dialog = page.get_by_role("dialog", name="Attach a resource")
    expect(dialog).to_be_visible()
    listed = dialog.locator("li").all_inner_texts()
    dialog.locator("li", has_text="Read me").get_by_role("button", name="Attach").click()
    expect(dialog.locator("li", has_text="Read me").get_by_role("button")).to_have_text("Attached")
    harness.screenshot("library-attach")
    dialog.get_by_role("button", name="Done").click()
    chips = page.locator("#attachments .chip").all_inner_texts()

    page.get_by_role("button", name="Start from a prompt").click()
    dialog = page.get_by_role("dialog", name="Start from a prompt")
    dialog.locator("li", has_text="greet").get_by_role("button", name="Use").click()
    dialog.get_by_label("name *").fill("Ada")
    dialog.get_by_role("button", name="Use prompt").click()
    expect(page.locator("dialog.library")).to_have_count(0)
    filled = message_box(page).input_value()
    message_box(page).press("Enter")
    wait_done(page)
    shown = page.locator("article.message.user .chip").all_inner_texts()
    chips_after = page.locator("#attachments .chip").count()
    harness.screenshot("library-sent")
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    page.wait_for_selector("article.message.user")
    reloaded = page.locator("article.message.user .chip").all_inner_texts()
    harness.finish(
        {
            "listed": listed,
            "chips": chips,
            "filled": filled,
            "shown": shown,
            "chips_after": chips_after,
            "reloaded": reloaded,
            "answer": last_answer(page).inner_text(),
        }
    )


def oauth_login():
    """A remote MCP server that wants a login: the status view offers it, the authorization
    page opens in a new tab and comes back to the server, and the server becomes ready."""
    page = open_page()
    page.get_by_role("button", name="Status").click()
    status = page.get_by_role("dialog", name="Server status")
    row = status.locator("tr", has_text="remote")
    expect(row).to_contain_text("needs_login")
    before = row.inner_text()
    with page.context.expect_page() as opened:
        row.get_by_role("button", name="Log in").click()
    tab = opened.value
    tab.wait_for_load_state()
    tab.wait_for_selector("h1")
    landed = tab.locator("h1").inner_text()
    tab.screenshot(path=str(harness.SCREENSHOT_DIR / "oauth-callback.png"))
    expect(row).to_contain_text("ready", timeout=20000)
    harness.screenshot("oauth-ready")
    harness.finish({"before": before, "landed": landed, "url": tab.url, "after": row.inner_text()})


def restart():
    """The provider breaks off mid-answer and the fallback answers: the page drops the
    partial text and shows the new answer whole, with the notice."""
    page = open_page()
    send(page, "Tell me a story")
    wait_done(page)
    harness.screenshot("restart")
    answer = last_answer(page)
    harness.finish(
        {
            "answer": answer.locator(".content").inner_text(),
            "notices": answer.locator("p.notice").all_inner_texts(),
        }
    )


def reattach():
    """The socket drops in the middle of an answer: the answer goes on on the server, and once
    reconnected the page follows it again and shows it whole, with nothing repeated."""
    page, routes = open_through_proxy()
    send(page, "Count slowly")
    page.wait_for_function(
        "() => { const a = [...document.querySelectorAll('article.message.assistant')].pop();"
        " return a && a.innerText.includes('n4'); }"
    )
    routes[-1].close(code=1001, reason="dropped")
    page.wait_for_selector("#connection.offline")
    wait_done(page)
    harness.screenshot("reattach")
    harness.finish(
        {
            "sockets": len(routes),
            "answer": last_answer(page).locator(".content").inner_text(),
            "alerts": page.locator("article.message.assistant .alert").count(),
        }
    )


SCENARIOS = {
    "reattach": reattach,
    "restart": restart,
    "oauth_login": oauth_login,
    "library": library,
    "question": question,
    "approval": approval,
    "approval_expires": approval_expires,
    "manage": manage,
    "admin": admin,
    "reconnect": reconnect,
    "unconfigured": unconfigured,
    "stream": stream,
    "tool": tool,
    "hostile": hostile,
    "login": login,
    "stop": stop,
    "long_conversation": long_conversation,
    "narrow": narrow,
}

SCENARIOS[SCENARIO]()

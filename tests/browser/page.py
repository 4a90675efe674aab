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
    harness.finish(
        {
            "classes": block.get_attribute("class"),
            "name": block.locator(".name").inner_text(),
            "server": block.locator(".server").inner_text(),
            "badge": block.locator(".badge").inner_text(),
            "duration": block.locator(".duration").inner_text(),
            "arguments": block.locator(".detail pre").first.inner_text(),
            "result": block.locator(".result").inner_text(),
            "answer": last_answer(page).locator(".markdown").last.inner_text(),
        }
    )


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
    harness.finish(
        {
            "refused": refused,
            "answer": last_answer(page).locator(".content").inner_text(),
            "logout_visible": page.locator("#logout").is_visible(),
            "status_visible": page.locator("#status").is_visible(),
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
        }
    )


SCENARIOS = {
    "stream": stream,
    "tool": tool,
    "hostile": hostile,
    "login": login,
    "stop": stop,
    "long_conversation": long_conversation,
    "narrow": narrow,
}

SCENARIOS[SCENARIO]()

"""The annotation page at /ui, in a real headless Chromium, against a real node.

A person unlocks a keystore in the browser (decryption and signing happen in the
page: the passphrase, the keystore and the key never reach the node, which the
test checks on every request the page makes; the page signs with the magicoin JS
client, clients/js bundled as node/ui/vendor/magicoin-client.js, through viem's
default send), registers as an annotator, answers
the gold tasks the chain mixes in until their accuracy gives them a vote weight,
labels a task posted by someone else, and sees the label recognised and paid:
their record, recognition and the pool, as the page shows them, match the chain.

The node is one validator finalising alone on loopback. The person is the only
registered annotator and a task's creator (the validator) is never drawn, so every
draw lands on the person: the test is deterministic.

Debian's /usr/bin/chromium is driven by Playwright (`make setup` installs it;
Playwright's own browser download is never used). Set MAGICOIN_UI_SCREENSHOT to
a path (e.g. docs/ui.png) to keep the screenshot the test takes.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import httpx
import pytest
import rlp
import trio
from eth_account import Account

from chain.payloads import AnnotationTask
from chain.transactions import sign_work_transaction
from genesis.keys import new_private_key, write_keystore
from node.ui import UIFiles
from tests.node.nodekit import (
    CHAIN_ID,
    PARAMS,
    VALIDATOR_KEYS,
    make_node,
    make_test_genesis,
    start_node,
)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PASSPHRASE = "correct horse battery staple"
WRONG_PASSPHRASE = "not the passphrase"
POSTED = ("Lisbon is the capital of Portugal.", "Octopuses have eight arms.")  # not in the gold set
TIMEOUT_MS = 30_000  # each step
BROWSER_BUDGET_S = 75  # the whole walk through the page

needs_chromium = pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK),
                                    reason=f"no {CHROMIUM}: `make setup` installs Debian's chromium")


def rpc(url: str, method: str, *params):
    body = httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)},
                      timeout=10).json()
    assert "error" not in body, (method, body)
    return body["result"]


def post_task(url: str, content: bytes, labels: list[bytes]) -> str:
    """The validator posts an annotation task (k = 1); returns the transaction hash."""
    key = VALIDATOR_KEYS[0]
    nonce = int(rpc(url, "eth_getTransactionCount", Account.from_key(key).address, "pending"), 16)
    raw = sign_work_transaction(key, chain_id=CHAIN_ID, nonce=nonce, kind="annotation_task",
                                data=rlp.encode(AnnotationTask(content, labels, 1)))
    return rpc(url, "eth_sendRawTransaction", "0x" + raw.hex())


def wait_for_receipt(url: str, tx_hash: str, timeout: float = 30) -> dict:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        receipt = rpc(url, "eth_getTransactionReceipt", tx_hash)
        if receipt is not None:
            return receipt
        time.sleep(0.1)
    raise AssertionError(f"no receipt for {tx_hash} after {timeout} s")


def count_transactions(page) -> int:
    return page.locator("#tx-log li.tx").count()


def settled_transaction(page, before: int):
    """The page's newest transaction (there were `before`), once its receipt is in (success or failed)."""
    # The page's CSP forbids eval, and Playwright evaluates a predicate given as an expression with it:
    # every wait_for_function here is an arrow function, so the page runs under its real CSP.
    page.wait_for_function("""(before) => {
        const entries = document.querySelectorAll('#tx-log li.tx');
        return entries.length > before && entries[0].dataset.status !== 'pending';
    }""", arg=before)
    return page.locator("#tx-log li.tx").first


def answer(page, pick) -> tuple[str, str]:
    """Label the first unanswered task on the page with `pick(content, labels)`; (task id, tx hash)."""
    task = page.locator("li.task:not([data-answered])").first
    task.wait_for()
    task_id = task.get_attribute("data-task-id")
    labels = task.locator("button.label").all_text_contents()
    label = pick(task.locator(".content").text_content(), labels)
    before = count_transactions(page)
    task.get_by_role("button", name=label, exact=True).click()
    sent = settled_transaction(page, before)
    assert sent.get_attribute("data-status") == "success", sent.text_content()
    page.wait_for_selector(f"li.task[data-task-id='{task_id}'][data-answered=success]")
    return task_id, sent.get_attribute("data-hash")


def drive_the_page(url: str, keystore_path: Path, keystore_key: bytes, gold_answers: dict[str, str],
                   min_gold: int, screenshot: Path) -> dict:
    """Everything a person does on the page; returns what the test checks against the chain."""
    from playwright.sync_api import sync_playwright

    problems: list[str] = []
    started = time.monotonic()

    def mark(phase: str) -> None:  # printed: a slow or failed run says where its time went
        elapsed = time.monotonic() - started
        print(f"{elapsed:6.1f} s  {phase}")
        assert elapsed < BROWSER_BUDGET_S, f"{phase} after {elapsed:.0f} s"

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.set_default_timeout(TIMEOUT_MS)
            page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
            page.on("console", lambda message: problems.append(f"console: {message.text}")
                    if message.type == "error" else None)
            sent: list[str] = []  # every URL and body the page sends
            page.on("request", lambda request: sent.append(f"{request.url} {request.post_data or ''}"))

            mark("chromium started")
            page.goto(url + "/ui")
            page.wait_for_selector("body[data-ready=true]")
            page.wait_for_function("() => document.getElementById('head').textContent !== '–'")

            # A pasted keystore with the wrong passphrase: refused in the page. (A low scrypt n for this
            # one; the file below is the real format, n = 2**18: about 1 s, several on a busy machine.)
            pasted = Account.encrypt(keystore_key, PASSPHRASE, iterations=2 ** 12)
            page.fill("#keystore-text", json.dumps(pasted))
            page.fill("#passphrase", WRONG_PASSPHRASE)
            page.click("#unlock")
            page.wait_for_selector("#signin-status[data-kind=error]")
            assert page.text_content("#signin-status") == "Wrong passphrase for this keystore."
            assert page.is_hidden("#account")

            mark("wrong passphrase refused")
            # Sign in: the keystore file and the passphrase stay in the page.
            page.set_input_files("#keystore-file", str(keystore_path))
            page.fill("#passphrase", PASSPHRASE)
            page.click("#unlock")
            page.wait_for_selector("#account:not([hidden])")
            assert page.text_content("#address") == Account.from_key(keystore_key).address

            mark("signed in")
            # Register as an annotator: a signed register_annotator transaction, included with status 1.
            page.wait_for_selector("#register-row:not([hidden])")
            page.click("#register")
            registration = settled_transaction(page, 0)
            assert registration.get_attribute("data-status") == "success", registration.text_content()
            registration_hash = registration.get_attribute("data-hash")
            page.wait_for_selector("body[data-annotator=registered]")

            mark("registered")
            # The chain mixes gold tasks in, drawn for the only annotator; answering them right earns a weight.
            gold_answered = 0
            while gold_answered < min_gold:
                answer(page, lambda content, labels: gold_answers[content])
                gold_answered += 1
            page.wait_for_function("(n) => document.getElementById('gold').textContent.startsWith(`${n} correct`)",
                                   arg=min_gold)

            mark(f"{min_gold} gold tasks answered")
            # Now a posted task can be drawn for this person (the creator never is): label it.
            task_tx = post_task(url, POSTED[0].encode(), [b"true", b"false"])
            task_receipt = wait_for_receipt(url, task_tx)
            assert int(task_receipt["status"], 16) == 1, task_receipt["failureReason"]
            page.wait_for_selector(f"li.task:not([data-answered]) .content:text-is('{POSTED[0]}')")
            while True:  # a gold task drawn meanwhile is answered too
                task_id, annotation_hash = answer(page, lambda content, labels: gold_answers.get(content, "true"))
                if page.text_content(f"li.task[data-task-id='{task_id}'] .content") == POSTED[0]:
                    break

            mark("posted task labelled")
            # The recognised label pays: recognition shows on the page. One more task stays open for the picture.
            page.wait_for_function(
                "() => !['–', '0 MUAGIC'].includes(document.getElementById('recognition').textContent)")
            post_task(url, POSTED[1].encode(), [b"true", b"false"])
            page.wait_for_selector(f"li.task:not([data-answered]) .content:text-is('{POSTED[1]}')")
            page.wait_for_timeout(2500)  # one more refresh, so every figure is the latest
            shown = {key: page.text_content(f"#{key}") for key in (
                "recognition", "balance", "nonce", "operator", "accuracy", "gold", "weight", "tasks-answered",
                "pool-balance", "pool-issued")}
            page.evaluate("window.scrollTo(0, 0)")
            page.screenshot(path=str(screenshot))
            mark("recognition shown, screenshot taken")
        finally:
            browser.close()
    return {"problems": problems, "sent": sent, "registration": registration_hash,
            "annotation": annotation_hash, "task_id": task_id, "shown": shown}


def format_muagic(wei_hex: str) -> str:
    """What the page's formatMuagic shows (up to 6 decimals, trailing zeros dropped)."""
    wei = int(wei_hex, 16)
    whole, fraction = divmod(wei, 10 ** 18)
    digits = f"{fraction:018d}"[:6].rstrip("0")
    shown = f"{whole:,}" + (f".{digits}" if digits else "")
    return "< 0.000001 MUAGIC" if wei > 0 and shown == "0" else f"{shown} MUAGIC"


@needs_chromium
async def test_a_person_annotates_in_the_browser(tmp_path, nursery):
    params = PARAMS.copy(annotation_deadline_blocks=1000, gold_interval_blocks=5)  # no task expires mid-test
    genesis = make_test_genesis(1, params=params)
    assert genesis.gold_tasks, "the test genesis ships the default gold set"
    node = make_node(genesis, tmp_path / "node", VALIDATOR_KEYS[0], http=("127.0.0.1", 0))
    await start_node(nursery, node)
    with trio.fail_after(30):
        while node.http_url is None or node.chain.height < 2:
            await trio.sleep(0.05)
    url = node.http_url
    person = Account.from_key(new_private_key())
    # The keystore `magicoin account new` writes (eth-account's scrypt, n = 2**18: about 1 s in the browser).
    keystore_path = write_keystore(tmp_path / "person.json", person.key, PASSPHRASE)
    screenshot = tmp_path / "ui.png"

    gold_answers = {gold.content.decode(): gold.labels[gold.answer].decode() for gold in genesis.gold_tasks}
    assert not set(POSTED) & set(gold_answers)
    result = await trio.to_thread.run_sync(drive_the_page, url, keystore_path, bytes(person.key), gold_answers,
                                           genesis.params.annotator_min_gold, screenshot)
    assert result["problems"] == []
    keystore = json.loads(keystore_path.read_text())
    secrets = (PASSPHRASE, WRONG_PASSPHRASE, keystore["crypto"]["ciphertext"], bytes(person.key).hex())
    assert any("eth_sendRawTransaction" in line for line in result["sent"])
    # Signed by the JS client: its bundle was loaded, and viem's default send asked the node for a gas
    # estimate and the fee data (the page itself names no gas or fee).
    assert any(line.startswith(url + "/ui/vendor/magicoin-client.js") for line in result["sent"])
    for method in ("eth_estimateGas", "eth_maxPriorityFeePerGas"):
        assert any(method in line for line in result["sent"]), method
    assert [line for line in result["sent"] if any(secret in line for secret in secrets)] == [], \
        "the keystore, its passphrase or the key left the page"

    def check() -> None:
        for tx_hash in (result["registration"], result["annotation"]):
            receipt = rpc(url, "eth_getTransactionReceipt", tx_hash)
            assert int(receipt["status"], 16) == 1, receipt
            assert receipt["from"].lower() == person.address.lower()
        annotation = rpc(url, "eth_getTransactionByHash", result["annotation"])
        assert annotation["to"].lower() == "0x0000000000000000000000000000000000001006"
        assert int(annotation["type"], 16) == 2 and int(annotation["chainId"], 16) == CHAIN_ID
        assert int(annotation["maxPriorityFeePerGas"], 16) == 0  # viem's fee data: no tip on this chain
        task = rpc(url, "muagic_getAnnotationTask", result["task_id"])
        assert task["status"] == "recognised" and task["label"] == "0x0"
        assert [a["address"].lower() for a in task["annotations"]] == [person.address.lower()]
        record = rpc(url, "muagic_getAnnotator", person.address)
        assert record is not None and record["operator"] == "person"
        min_gold = genesis.params.annotator_min_gold
        assert int(record["goldSeen"], 16) == int(record["goldCorrect"], 16) >= min_gold
        assert int(record["weightPpm"], 16) > 0 and int(record["tasksAnswered"], 16) >= min_gold + 1
        account = rpc(url, "muagic_getAccount", person.address, "latest")
        assert int(account["recognition"], 16) > 0
        shown = result["shown"]
        assert shown["nonce"] == str(int(account["nonce"], 16))
        assert shown["recognition"] == format_muagic(account["recognition"])
        assert shown["operator"] == "person"
        assert shown["accuracy"] == f"{int(record['accuracyPpm'], 16) / 10000:.1f} %"
        assert shown["gold"] == f"{int(record['goldCorrect'], 16)} correct of {int(record['goldSeen'], 16)}"
        pool = rpc(url, "muagic_getPool", "latest")
        assert shown["pool-issued"].endswith("MUAGIC") and int(pool["issued"], 16) > 0
        assert shown["pool-balance"].endswith("MUAGIC")

    await trio.to_thread.run_sync(check)
    assert screenshot.stat().st_size > 10_000
    if os.environ.get("MAGICOIN_UI_SCREENSHOT"):
        shutil.copyfile(screenshot, os.environ["MAGICOIN_UI_SCREENSHOT"])
    nursery.cancel_scope.cancel()


async def test_ui_files_are_served_by_whitelist(tmp_path, nursery):
    """GET /ui and its assets with their content types; nothing outside the whitelist; JSON-RPC untouched."""
    node = make_node(make_test_genesis(1), tmp_path / "node", VALIDATOR_KEYS[0], http=("127.0.0.1", 0))
    await start_node(nursery, node)
    with trio.fail_after(30):
        while node.http_url is None:
            await trio.sleep(0.05)
    url = node.http_url

    def check() -> None:
        with httpx.Client(base_url=url, timeout=10) as client:
            for path in ("/ui", "/ui/", "/ui/index.html"):
                page = client.get(path)
                assert page.status_code == 200 and page.headers["content-type"] == "text/html; charset=utf-8"
                assert "default-src 'none'" in page.headers["content-security-policy"]
                assert page.headers["x-content-type-options"] == "nosniff"
            assert client.get("/ui/app.js").headers["content-type"] == "text/javascript; charset=utf-8"
            assert client.get("/ui/style.css").headers["content-type"] == "text/css; charset=utf-8"
            ethers = client.get("/ui/vendor/ethers.umd.min.js")
            assert ethers.status_code == 200 and b'version="6.' in ethers.content[:2000]
            client_bundle = client.get("/ui/vendor/magicoin-client.js")
            assert client_bundle.status_code == 200
            assert client_bundle.headers["content-type"] == "text/javascript; charset=utf-8"
            assert b"@magicoin/client" in client_bundle.content[:200]
            head = client.head("/ui/app.js")
            assert head.status_code == 200 and head.content == b"" and int(head.headers["content-length"]) > 1000
            for path in ("/ui/__init__.py", "/ui/../pyproject.toml", "/ui/%2e%2e/http.py", "/ui/..%2fhttp.py",
                         "/ui/vendor/../../http.py", "/ui//etc/passwd", "/ui/nope.js", "/uiapp.js",
                         "/ui/vendor", "/ui/__pycache__/__init__.cpython-311.pyc"):
                response = client.request("GET", httpx.URL(url + path) if "%" in path else path)
                assert response.status_code == 404, path
                assert response.headers["content-type"] == "application/json"
            refused = client.post("/ui", content=b"{}")
            assert refused.status_code == 405 and refused.headers["allow"] == "GET, HEAD"
            answer = client.post("/", json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []})
            assert answer.json()["result"] == hex(CHAIN_ID)

    await trio.to_thread.run_sync(check)
    nursery.cancel_scope.cancel()


def test_the_whitelist_never_names_a_path_outside_the_folder():
    files = UIFiles()
    shipped = {"index.html", "app.js", "style.css", "vendor/ethers.umd.min.js", "vendor/magicoin-client.js"}
    assert shipped <= set(files.files)
    assert all(not name.endswith(".py") and ".." not in name for name in files.files)
    for path in ("/ui/../node/http.py", "/ui/./app.js", "/ui/vendor/./ethers.umd.min.js", "/ui\\app.js",
                 "/ui/app.js/", "/ui/APP.JS", "/ui/app.js\x00.html"):
        assert files.resolve(path) is None, path
    assert files.resolve("/ui") == files.resolve("/ui/") == "index.html"

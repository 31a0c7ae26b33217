"""A person's commands against a real `magicoin node` process: accounts, signed work, and reading it back.

One validator node (no model worker) runs for the module on loopback; the
commands run through click's CliRunner as a person would type them, with
keystores and password files on disk and every transaction signed and sent
over JSON-RPC.
"""
from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from chain.payloads import compute_work_id
from chain.transactions import sign_work_transaction
from eth_utils import keccak
from genesis import DEFAULT_PARAMS, MUAGIC, make_genesis, save_genesis
from genesis.keys import devnet_private_key, get_address, read_keystore
from inference.jobs import JobSpec
from inference.models import DEFAULT_MODEL_SHA256
from node.cli import cli

PASSPHRASE = "correct horse"
CHAIN_ID = 5252
VALIDATOR_KEY = devnet_private_key(0)  # INSECURE, public: funded by this test's genesis
GOLD_ANSWERS_NEEDED = 1  # gold answers on record before a person's vote weighs anything (3 on the devnet)
PARAMS = DEFAULT_PARAMS.copy(annotator_min_gold=GOLD_ANSWERS_NEEDED)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rpc(url: str, method: str, *params):
    response = httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}, timeout=5)
    return response.json()["result"]


class LiveNode:
    def __init__(self, url: str, genesis, process: subprocess.Popen) -> None:
        self.url, self.genesis, self.process = url, genesis, process

    def height(self) -> int:
        return int(rpc(self.url, "eth_blockNumber"), 16)


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    root = tmp_path_factory.mktemp("person-node")
    genesis = make_genesis(CHAIN_ID, [get_address(VALIDATOR_KEY)], timestamp_ms=1_700_000_000_000, params=PARAMS)
    save_genesis(genesis, root / "genesis.json")
    (root / "validator.hex").write_text("0x" + VALIDATOR_KEY.hex() + "\n")
    port = free_port()
    command = [sys.executable, "-c", "from node.cli import main; main()", "node", "--datadir", str(root / "data"),
               "--genesis", str(root / "genesis.json"), "--validator-key", str(root / "validator.hex"),
               "--http.port", str(port), "--p2p.port", "0", "--block-interval", "0.2"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    live = LiveNode(f"http://127.0.0.1:{port}", genesis, process)
    deadline = time.monotonic() + 60  # generous: the suite may share the machine with other node tests
    while True:
        assert process.poll() is None, process.stderr.read()[-3000:]
        assert time.monotonic() < deadline, "the node made no blocks within 60 s"
        try:
            if live.height() >= 2:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    yield live
    process.send_signal(signal.SIGTERM)
    try:
        process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()


@pytest.fixture(scope="module")
def password_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("secrets") / "password"
    path.write_text(PASSPHRASE + "\n")
    return path


@pytest.fixture(scope="module")
def validator_keystore(tmp_path_factory, password_file) -> Path:
    """A keystore directory holding the funded genesis validator's key, imported from its raw key file."""
    directory = tmp_path_factory.mktemp("validator-keystore")
    key_file = directory.parent / "validator.key"
    key_file.write_text("0x" + VALIDATOR_KEY.hex() + "\n")
    imported = run("account", "import", str(key_file), "--keystore-dir", str(directory), "--password-file",
                   str(password_file))
    assert imported.exit_code == 0, imported.output
    assert read_field(imported.output, "address") == "0x" + get_address(VALIDATOR_KEY).hex()
    assert_fails(run("account", "import", str(key_file), "--keystore-dir", str(directory), "--password-file",
                     str(password_file)), "is already in")
    return directory


def run(*args: str, input: str | None = None, env: dict | None = None):
    return CliRunner().invoke(cli, list(args), input=input, env=env)


def assert_fails(result, *fragments: str) -> None:
    """Exit code 1 with a one-line error naming the problem, never a traceback."""
    assert result.exit_code == 1, result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in result.output, result.output


def read_field(output: str, name: str) -> str:
    for line in output.splitlines():
        if line.startswith(name + " "):
            return line[len(name):].strip()
    raise AssertionError(f"no {name!r} line in:\n{output}")


def new_account(directory: Path, password_file: Path) -> str:
    result = run("account", "new", "--keystore-dir", str(directory), "--password-file", str(password_file))
    assert result.exit_code == 0, result.output
    return read_field(result.output, "address")


def send(node: LiveNode, keystore: Path, password_file: Path, *args: str, sender: str = "0"):
    return run("send", *args, "--from", sender, "--keystore-dir", str(keystore), "--password-file",
               str(password_file), "--rpc", node.url)


def assert_receipt_reported(result) -> bool:
    """Either way the receipt went, the person reads it: ok (exit 0), or failed with the chain's reason (exit 1)."""
    assert "Traceback" not in result.output
    status = read_field(result.output, "status")
    if status == "ok":
        assert result.exit_code == 0, result.output
        return True
    assert status == "failed" and result.exit_code == 1, result.output
    assert read_field(result.output, "reason") not in ("", "no reason given"), result.output
    return False


# --- accounts -----------------------------------------------------------------------------------------

def test_account_new_and_list_with_a_password_file_the_prompt_and_the_env_var(tmp_path, password_file):
    keystore = tmp_path / "keystore"
    first = new_account(keystore, password_file)
    # At the prompt the passphrase is asked twice; a mismatch asks again.
    prompted = run("account", "new", "--keystore-dir", str(keystore),
                   input=f"{PASSPHRASE}\ntypo\n{PASSPHRASE}\n{PASSPHRASE}\n")
    assert prompted.exit_code == 0, prompted.output
    assert "do not match" in prompted.output
    second = read_field(prompted.output, "address")

    listed = run("account", "list", env={"MAGICOIN_KEYSTORE": str(keystore)})
    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    assert lines[0].startswith(f"#0  {first}") and lines[1].startswith(f"#1  {second}")
    path = Path(lines[1].split()[-1])
    assert "0x" + get_address(read_keystore(path, PASSPHRASE)).hex() == second
    assert path.stat().st_mode & 0o077 == 0  # readable by its owner only


# --- sending work ---------------------------------------------------------------------------------------

def test_offering_from_a_funded_validator_moves_exactly_its_value_and_shows_in_jobs(node, validator_keystore,
                                                                                    password_file):
    result = send(node, validator_keystore, password_file, "offering", "--value", "0.5", "--purpose", "thanks")
    assert assert_receipt_reported(result), result.output
    block = int(read_field(result.output, "block"))
    validator = "0x" + get_address(VALIDATOR_KEY).hex()
    before = int(rpc(node.url, "eth_getBalance", validator, hex(block - 1)), 16)
    after = int(rpc(node.url, "eth_getBalance", validator, hex(block)), 16)
    assert before - after == MUAGIC // 2

    jobs = run("jobs", "--account", validator, "--rpc", node.url)
    assert jobs.exit_code == 0, jobs.output
    assert read_field(jobs.output, "account") == validator and read_field(jobs.output, "balance").endswith(" MUAGIC")
    assert read_field(result.output, "sent") in jobs.output  # the offering is listed


def answer_gold_tasks(node: LiveNode, keystore: Path, password_file: Path, person: str, count: int) -> None:
    """Answer, correctly, the chain's gold tasks drawn for `person` (as `magicoin tasks` lists them) until
    `count` of them are on its record."""
    answers = {gold.content.decode(): gold for gold in node.genesis.gold_tasks}
    tried: set[str] = set()
    accepted = 0
    deadline = time.monotonic() + 60
    while int(rpc(node.url, "muagic_getAnnotator", person)["goldSeen"], 16) < count:
        assert time.monotonic() < deadline, f"{accepted} gold answers accepted, fewer on record"
        listed = run("tasks", "--account", person, "--rpc", node.url, "--json")
        assert listed.exit_code == 0, listed.output
        height = node.height()
        for entry in json.loads(listed.output)["assigned"]:
            task_id = entry["taskId"]
            if task_id in tried or accepted >= count or int(entry["deadlineBlock"], 16) <= height + 5:
                continue
            # A person reads the content and knows; the test looks the answer up in the genesis gold set.
            gold = answers[entry["content"]]
            assert sorted(entry["labels"]) == sorted(label.decode() for label in gold.labels)
            result = send(node, keystore, password_file, "annotation", "--task", task_id, "--label",
                          gold.labels[gold.answer].decode())
            tried.add(task_id)
            # On a loaded machine the deadline may still pass while the keystore decrypts: then try the next one.
            if "status" in result.output and assert_receipt_reported(result):
                accepted += 1
            else:
                assert result.exit_code == 1 and "Traceback" not in result.output, result.output
        time.sleep(0.2)


def test_a_person_earns_gold_record_then_labels_a_posted_task_and_reads_it_back(node, tmp_path, validator_keystore,
                                                                                 password_file):
    keystore = tmp_path / "keystore"
    person = new_account(keystore, password_file)
    registered = send(node, keystore, password_file, "register-annotator")
    assert assert_receipt_reported(registered), registered.output

    # Before the person has a gold record, a posted task may find nobody to draw: the CLI says so either way.
    early = send(node, validator_keystore, password_file, "annotation-task", "--content", "Rome is in Italy.",
                 "--labels", "true,false", "--k", "1")
    assert_receipt_reported(early)

    answer_gold_tasks(node, keystore, password_file, person, GOLD_ANSWERS_NEEDED)
    posted = send(node, validator_keystore, password_file, "annotation-task", "--content",
                  "Paris is the capital of France.", "--labels", "true,false", "--k", "1")
    assert assert_receipt_reported(posted), posted.output
    task_id = read_field(posted.output, "work id")

    assert_fails(send(node, keystore, password_file, "annotation", "--task", task_id, "--label", "maybe"),
                 "'maybe' is not one of the task's labels")
    labelled = send(node, keystore, password_file, "annotation", "--task", task_id, "--label", "true")
    drawn = assert_receipt_reported(labelled)
    if drawn:
        assert rpc(node.url, "muagic_getAnnotationTask", task_id)["status"] != "open"
        assert_fails(send(node, keystore, password_file, "annotation", "--task", task_id, "--label", "false"),
                     "the task is closed")
    else:
        assert "not drawn" in read_field(labelled.output, "reason")

    tasks = run("tasks", "--account", person, "--rpc", node.url)
    assert tasks.exit_code == 0, tasks.output
    given = [line for line in tasks.output.splitlines() if line.strip().startswith(task_id)]
    assert given, tasks.output
    if drawn:  # the person's label, weighed by its gold accuracy, was recognised and paid
        assert "(agreed)" in given[0], tasks.output
        assert read_field(tasks.output, "balance") != "0 MUAGIC", tasks.output
    creator = run("tasks", "--account", "0", "--keystore-dir", str(validator_keystore), "--rpc", node.url, "--json")
    assert creator.exit_code == 0, creator.output
    assert task_id in [task["taskId"] for task in json.loads(creator.output)["created"] if task]


def test_register_worker_and_annotator_from_a_zero_balance_account(node, tmp_path, password_file):
    keystore = tmp_path / "keystore"
    address = new_account(keystore, password_file)
    worker = send(node, keystore, password_file, "register-worker", "--model", "default", "--capacity", "40")
    assert assert_receipt_reported(worker), worker.output
    annotator = send(node, keystore, password_file, "register-annotator", "--operator", "person")
    assert assert_receipt_reported(annotator), annotator.output
    record = rpc(node.url, "muagic_getAccount", address)
    assert record["worker"] is not None and int(record["worker"]["capacity"], 16) == 40
    assert int(record["balance"], 16) == 0


def test_jobs_lists_a_job_the_account_requested_with_its_status(node, validator_keystore, password_file):
    """A request as an app sends it (signed with the chain's helper, like /v1/chat/completions does)."""
    # Nobody holds the model yet: a request is refused up front, with the reason.
    key = keccak(b"person-cli-refused")
    spec = JobSpec.from_chat([("user", "Name a colour.")], DEFAULT_MODEL_SHA256, 8)
    raw = sign_work_transaction(key, chain_id=CHAIN_ID, nonce=0, kind="inference_request", data=spec.encode())
    refused = httpx.post(node.url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_sendRawTransaction",
                                         "params": ["0x" + raw.hex()]}, timeout=5).json()
    assert "cannot be audited" in refused["error"]["message"], refused
    # The validator declares it holds the model (it could audit its jobs), from the command line.
    declared = run("send", "declare-models", "--models", "default", "--from", "0", "--keystore-dir",
                   str(validator_keystore), "--password-file", str(password_file), "--rpc", node.url)
    assert assert_receipt_reported(declared), declared.output
    key = keccak(b"person-cli-requester")
    address = "0x" + get_address(key).hex()
    spec = JobSpec.from_chat([("user", "Name a colour.")], DEFAULT_MODEL_SHA256, 8)
    raw = sign_work_transaction(key, chain_id=CHAIN_ID, nonce=0, kind="inference_request", data=spec.encode())
    rpc(node.url, "eth_sendRawTransaction", "0x" + raw.hex())
    job_id = "0x" + compute_work_id(get_address(key), 0).hex()
    deadline = time.monotonic() + 20
    while rpc(node.url, "muagic_getJob", job_id) is None:
        assert time.monotonic() < deadline, "the request was not included"
        time.sleep(0.1)
    jobs = run("jobs", "--account", address, "--rpc", node.url)
    assert jobs.exit_code == 0, jobs.output
    line = next(line for line in jobs.output.splitlines() if line.strip().startswith(job_id))
    assert rpc(node.url, "muagic_getJob", job_id)["status"] in line or "expired" in line, jobs.output
    assert "jobs requested (1)" in jobs.output


# --- bad input ------------------------------------------------------------------------------------------------

def test_bad_input_gets_a_clear_error_and_exit_code_1(node, tmp_path, validator_keystore, password_file):
    wrong = tmp_path / "wrong"
    wrong.write_text("not it\n")
    keystore, secret = str(validator_keystore), str(password_file)
    signing = ["--keystore-dir", keystore, "--password-file", secret, "--rpc", node.url]
    cases = [
        (["send", "register-annotator", "--from", "0x" + "11" * 20, *signing], "no keystore for 0x1111"),
        (["send", "register-annotator", "--from", "7", *signing], "no account #7"),
        (["send", "register-annotator", "--keystore-dir", str(tmp_path / "none"), "--rpc", node.url],
         "no accounts in"),
        (["send", "register-annotator", "--keystore-dir", keystore, "--password-file", str(wrong), "--rpc", node.url],
         "wrong passphrase"),
        (["send", "register-annotator", "--keystore-dir", keystore, "--password-file", secret, "--rpc",
          f"http://127.0.0.1:{free_port()}"], "cannot reach the node at http://127.0.0.1:"),
        (["jobs", "--account", "0x" + "11" * 20, "--rpc", "not-a-url"], "cannot reach the node at not-a-url"),
        (["send", "annotation", "--task", "0x12zz", "--label", "a", *signing], "--task is not 32 bytes of hex"),
        (["send", "annotation", "--task", "0x" + "ab" * 32, "--label", "a", *signing], "no annotation task 0xabab"),
        (["send", "offering", "--value", "0.0000000000000000001", *signing], "too many decimals"),
        (["send", "offering", "--value", "-1", *signing], "must be positive"),
        (["send", "offering", "--value", "lots", *signing], "not a decimal amount"),
        (["send", "offering", "--value", "1000000", *signing], "is below the offering"),
        (["send", "register-worker", "--model", "0xbeef", "--capacity", "4", *signing], "--model is not 32 bytes"),
        (["send", "annotation-task", "--content", "x" * 20_000, "--labels", "a,b", *signing],
         "the node refused the transaction: annotation_task payload too large"),
        (["send", "annotation-task", "--content", "x", "--labels", "a,a", *signing], "distinct labels"),
        (["jobs", "--account", "0x1234", "--rpc", node.url], "not a 20-byte address"),
        (["account", "import", str(wrong), "--keystore-dir", str(tmp_path / "ks"), "--password-file", secret],
         "does not hold a raw private key"),
    ]
    for args, message in cases:
        assert_fails(run(*args), message)


def test_account_work_scans_a_bounded_range(node):
    validator = "0x" + get_address(VALIDATOR_KEY).hex()
    body = {"jsonrpc": "2.0", "id": 1, "method": "muagic_getAccountWork", "params": [validator, "0x0", hex(10_000)]}
    error = httpx.post(node.url, json=body, timeout=5).json()["error"]
    assert error["code"] == -32602 and "at most 10000 blocks" in error["data"]["expected"]
    work = rpc(node.url, "muagic_getAccountWork", validator, "0x0")
    assert [int(item["nonce"], 16) for item in work] == list(range(len(work)))  # every transaction, in order
    assert all(item["kind"] and item["txHash"].startswith("0x") for item in work)

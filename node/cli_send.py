"""`magicoin send ...`: sign a piece of work with a keystore account and submit it over JSON-RPC.

    magicoin send annotation-task --content "Paris is in France." --labels true,false --k 3
    magicoin send annotation --task 0x... --label true
    magicoin send offering --value 0.5 --job 0x...
    magicoin send register-worker --model default --capacity 40
    magicoin send register-annotator
    magicoin send declare-models --models default,0x...
    magicoin send register-model --model M.gguf

Each command checks what it can before asking for the passphrase (the input,
the node, the task), signs with `chain.transactions.sign_work_transaction` at
the node's chain id and pending nonce, sends with eth_sendRawTransaction and,
unless --no-wait, waits for the receipt: its status, the chain's
failureReason, and the id of the job or task the work names. A refused or
failed transaction exits with code 1.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, NamedTuple

import click
import rlp

from chain.payloads import (
    MAX_ANNOTATORS,
    MAX_CAPACITY,
    Annotation,
    AnnotationTask,
    DeclareModels,
    Offering,
    RegisterAnnotator,
    RegisterModel,
    RegisterWorker,
    compute_work_id,
)
from chain.transactions import sign_work_transaction
from inference.models import DEFAULT_MODEL_SHA256
from node.cli_account import find_account, get_keystore_dir, keystore_dir_option, password_file_option, unlock
from node.cli_rpc import (
    BadInput,
    RpcClient,
    RpcFailure,
    format_muagic,
    parse_hex_bytes,
    parse_muagic,
    parse_quantity,
    rpc_option,
    run_reporting_errors,
)
from node.exceptions import NodeError

RECEIPT_POLL_SECONDS = 0.2


class Refused(NodeError):
    """The node refused the transaction, or the chain included it but refused the work."""


class Work(NamedTuple):
    """What to sign: the kind, its RLP payload, the value it moves, and how to name the work it is about."""

    kind: str
    payload: rlp.Serializable
    value: int = 0
    work_id: Callable[[bytes, int], bytes | None] = lambda sender, nonce: None


class SendOptions(NamedTuple):
    sender: str | None
    keystore_dir: Path | None
    password_file: Path | None
    rpc_url: str
    wait: bool
    timeout: float


def signing_options(command: Callable) -> Callable:
    """The options every send command shares: who signs, with what, to which node, and whether to wait."""
    options = [
        click.option("--from", "sender", default=None,
                     help="Account address or index in `magicoin account list` (default: the only one)."),
        keystore_dir_option,
        password_file_option,
        rpc_option,
        click.option("--wait/--no-wait", default=True, show_default=True,
                     help="Wait for the receipt and print its status."),
        click.option("--timeout", type=click.FloatRange(0.1), default=60.0, show_default=True,
                     help="Seconds to wait for the receipt."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def send(options: SendOptions, prepare: Callable[[RpcClient, bytes], Work]) -> None:
    """Find the account, let `prepare` build (and check) the work against the node, then sign, send, wait."""
    account = find_account(get_keystore_dir(options.keystore_dir), options.sender)
    with RpcClient(options.rpc_url) as rpc:
        chain_id = parse_quantity(rpc.call("eth_chainId"))
        work = prepare(rpc, account.address)
        key = unlock(account, options.password_file)
        nonce = parse_quantity(rpc.call("eth_getTransactionCount", account.hex, "pending"))
        raw = sign_work_transaction(key, chain_id=chain_id, nonce=nonce, kind=work.kind,
                                    data=rlp.encode(work.payload), value=work.value)
        tx_hash = submit(rpc, raw)
        echo_sent(tx_hash, work, account.hex, nonce, work.work_id(account.address, nonce))
        if options.wait:
            report_receipt(wait_for_receipt(rpc, tx_hash, options.timeout))


def submit(rpc: RpcClient, raw: bytes) -> str:
    try:
        return rpc.call("eth_sendRawTransaction", "0x" + raw.hex())
    except RpcFailure as error:
        # The node's message already says what it got and expected.
        raise Refused(f"the node refused the transaction: {error.node_message}") from None


def echo_sent(tx_hash: str, work: Work, sender: str, nonce: int, work_id: bytes | None) -> None:
    click.echo(f"sent      {tx_hash}")
    click.echo(f"kind      {work.kind}")
    click.echo(f"from      {sender}")
    click.echo(f"nonce     {nonce}")
    if work_id is not None:
        click.echo(f"work id   0x{work_id.hex()}")


def wait_for_receipt(rpc: RpcClient, tx_hash: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        receipt = rpc.call("eth_getTransactionReceipt", tx_hash)
        if receipt is not None:
            return receipt
        time.sleep(RECEIPT_POLL_SECONDS)
    raise Refused(f"no receipt for {tx_hash} after {timeout:g} s; it may still be included "
                  f"(look it up with eth_getTransactionReceipt)")


def report_receipt(receipt: dict) -> None:
    click.echo(f"block     {parse_quantity(receipt['blockNumber'])}")
    if parse_quantity(receipt["status"]) == 1:
        click.echo("status    ok")
        return
    reason = receipt.get("failureReason") or "no reason given"
    click.echo("status    failed")
    click.echo(f"reason    {reason}")
    raise Refused(f"the chain included the transaction but refused the work: {reason}")


def validate(payload: rlp.Serializable) -> rlp.Serializable:
    """The payload's own stateless checks, before any passphrase is asked (PayloadFieldOutOfRange)."""
    payload.validate()
    return payload


# --- annotation tasks and annotations ------------------------------------------------------------------------

def parse_labels(text: str) -> list[bytes]:
    labels = [label.strip() for label in text.split(",")]
    if any(not label for label in labels):
        raise BadInput("empty label", got=text, expected="comma-separated labels, e.g. true,false")
    return [label.encode() for label in labels]


def get_open_task(rpc: RpcClient, task_id: bytes, annotator: bytes) -> dict:
    """The task record, checked to be open, before its deadline, and answerable by `annotator`."""
    task = rpc.call("muagic_getAnnotationTask", "0x" + task_id.hex())
    if task is None:
        raise BadInput(f"no annotation task 0x{task_id.hex()} on the node at {rpc.url}")
    if task["status"] != "open":
        raise BadInput(f"the task is closed ({task['status']})")
    height = parse_quantity(rpc.call("eth_blockNumber"))
    deadline = parse_quantity(task["deadlineBlock"])
    if height >= deadline:
        raise BadInput(f"the task's deadline has passed (block {deadline}, the chain is at {height})")
    own = "0x" + annotator.hex()
    if task["requester"] == own:
        raise BadInput("this account created the task; its creator cannot annotate it")
    if any(entry["address"] == own for entry in task["annotations"]):
        raise BadInput("this account already annotated the task")
    drawn = task.get("annotators")  # older nodes do not show the draw; the chain still checks it
    if drawn is not None and own not in drawn:
        raise BadInput(f"{own} was not drawn for this task; `magicoin tasks` lists the tasks drawn for you",
                       got=own, expected=drawn)
    return task


def find_label_index(labels: list[str] | None, label: str) -> int:
    """The index of `label` by name, or the label given as its index."""
    if labels is not None and label in labels:
        return labels.index(label)
    if label.isdigit() and (labels is None or int(label) < len(labels)):
        # Unknown labels (the node cannot show this task's): an index is passed on for the chain to check.
        return int(label)
    if labels is None:
        raise BadInput("the node does not show this task's labels; give the label by its index", got=label)
    raise BadInput(f"{label!r} is not one of the task's labels", got=label, expected=labels)


@click.group("send")
def send_group() -> None:
    """Sign work with a keystore account and submit it to a node."""


@send_group.command("annotation-task")
@click.option("--content", required=True, help="The text to label.")
@click.option("--labels", required=True, help="Comma-separated label set, e.g. true,false.")
@click.option("--k", "k", type=click.IntRange(1, MAX_ANNOTATORS), default=3, show_default=True,
              help="How many annotators the chain draws.")
@signing_options
def annotation_task_command(content: str, labels: str, k: int, **options) -> None:
    """Post content and a label set for annotators to label."""
    def prepare(rpc: RpcClient, sender: bytes) -> Work:
        return Work("annotation_task", validate(AnnotationTask(content.encode(), parse_labels(labels), k)),
                    work_id=compute_work_id)

    run_reporting_errors(send, SendOptions(**options), prepare)


@send_group.command("annotation")
@click.option("--task", "task_hex", required=True, help="The task id (0x + 64 hex digits).")
@click.option("--label", required=True, help="A label of the task, by name or by index.")
@signing_options
def annotation_command(task_hex: str, label: str, **options) -> None:
    """Label a task the chain drew you for."""
    def prepare(rpc: RpcClient, sender: bytes) -> Work:
        task_id = parse_hex_bytes(task_hex, 32, "--task")
        task = get_open_task(rpc, task_id, sender)
        index = find_label_index(task["labels"], label)
        return Work("annotation", validate(Annotation(task_id, index)), work_id=lambda *_: task_id)

    run_reporting_errors(send, SendOptions(**options), prepare)


# --- offerings and registrations ------------------------------------------------------------------------------

@send_group.command("offering")
@click.option("--value", required=True, help="MUAGIC to offer into the pool (decimal, up to 18 decimals).")
@click.option("--job", "job_hex", default=None, help="A job this offering prioritises (0x + 64 hex digits).")
@click.option("--purpose", default="", help="A short note (at most 64 bytes).")
@signing_options
def offering_command(value: str, job_hex: str | None, purpose: str, **options) -> None:
    """Offer part of your balance into the common pool (optionally for a job). It cannot be taken back."""
    def prepare(rpc: RpcClient, sender: bytes) -> Work:
        amount = parse_muagic(value)
        job_id = parse_hex_bytes(job_hex, 32, "--job") if job_hex is not None else b""
        balance = parse_quantity(rpc.call("eth_getBalance", "0x" + sender.hex(), "latest"))
        if balance < amount:
            raise BadInput(f"the balance of 0x{sender.hex()} ({format_muagic(balance)}) is below the offering "
                           f"({format_muagic(amount)})")
        return Work("offering", validate(Offering(purpose.encode(), job_id)), amount,
                    work_id=lambda *_: job_id or None)

    run_reporting_errors(send, SendOptions(**options), prepare)


def parse_model(text: str) -> bytes:
    return DEFAULT_MODEL_SHA256 if text == "default" else parse_hex_bytes(text, 32, "--model")


@send_group.command("register-worker")
@click.option("--model", required=True, help="The sha256 of the GGUF you serve, or `default`.")
@click.option("--capacity", type=click.IntRange(1, MAX_CAPACITY), required=True,
              help="Tokens/s you declare (the router fills at most 70% of it).")
@signing_options
def register_worker_command(model: str, capacity: int, **options) -> None:
    """Register the account as an inference worker for a model."""
    def prepare(rpc: RpcClient, sender: bytes) -> Work:
        return Work("register_worker", validate(RegisterWorker(parse_model(model), capacity)))

    run_reporting_errors(send, SendOptions(**options), prepare)


@send_group.command("register-annotator")
@click.option("--operator", default="person", show_default=True,
              help="Who labels: `person`, or `model:<sha256>` for a local LLM.")
@signing_options
def register_annotator_command(operator: str, **options) -> None:
    """Register the account as an annotator, so the chain can draw it for tasks."""
    def prepare(rpc: RpcClient, sender: bytes) -> Work:
        return Work("register_annotator", validate(RegisterAnnotator(operator.encode())))

    run_reporting_errors(send, SendOptions(**options), prepare)


@send_group.command("declare-models")
@click.option("--models", required=True,
              help="Comma-separated sha256s (or `default`) of the models you hold and can audit with; "
                   "replaces your last declaration (an empty string declares none).")
@signing_options
def declare_models_command(models: str, **options) -> None:
    """Declare the models you hold: audit committees for a model are drawn among its holders."""
    def prepare(rpc: RpcClient, sender: bytes) -> Work:
        held = [parse_model(item.strip()) for item in models.split(",") if item.strip()]
        return Work("declare_models", validate(DeclareModels(held)))

    run_reporting_errors(send, SendOptions(**options), prepare)


@send_group.command("register-model")
@click.option("--model", "model_path", type=click.Path(dir_okay=False), required=True, help="The GGUF file.")
@click.option("--name", default=None, help="The card's name (at most 64 bytes). [the file name]")
@signing_options
def register_model_command(model_path: str, name: str | None, **options) -> None:
    """Register a model's card (sha256, chat template and vocabulary hashes) so the chain takes jobs on it."""
    def prepare(rpc: RpcClient, sender: bytes) -> Work:
        from inference.cards import compute_model_card
        from inference.engine import load_model

        with load_model(model_path, n_threads=1) as model:
            card = compute_model_card(model, name.encode() if name else None)
        return Work("register_model", validate(RegisterModel(*card)))

    run_reporting_errors(send, SendOptions(**options), prepare)


COMMANDS: list = [send_group]

"""Drawn annotators, gold tasks and accuracy weight on the real chain: LevelDB, signed transactions, signed commits.

The two attacks of issue 11 (sybil keys answering their own task; a model's
validator weight outvoting people) replayed against the rules, and the RPC a
person's CLI and web page read (`muagic_getAnnotator`, `muagic_getAssignedTasks`,
`muagic_getAnnotationTask`).
"""
from __future__ import annotations

import json

import rlp
from eth_utils import keccak

from chain.chain import Chain
from chain.db import LevelDB
from chain.ledger import get_recognition
from chain.payloads import Annotation, AnnotationTask, RegisterAnnotator, compute_work_id
from chain.transactions import sign_work_transaction
from consensus.votes import EMPTY_COMMIT
from economy import (
    TaskStatus, compute_gold_presentation, get_annotator, get_open_tasks, get_task, is_gold_task, make_work_rules,
)
from genesis import DEFAULT_PARAMS, make_genesis
from genesis.format import GoldTask
from genesis.keys import get_address
from node.devchain import DEV_CHAIN_ID, VALIDATOR_KEYS, ChainNode, append_block, sign_commit
from node.rpc import RPCDispatcher
from node.rpc_muagic import muagic_get_annotation_task, muagic_get_annotator, muagic_get_assigned_tasks

KEYS = VALIDATOR_KEYS[:4]
GOLD = [GoldTask(b"Ice is frozen water.", [b"true", b"false"], 0),
        GoldTask(b"Seven is an even number.", [b"true", b"false"], 1),
        GoldTask(b"Tokyo is in Japan.", [b"true", b"false"], 0),
        GoldTask(b"Two plus two equals five.", [b"true", b"false"], 1)]
ROME = AnnotationTask(b"Rome is the capital of Italy.", [b"true", b"false"], 3)


def key(name: str) -> bytes:
    return keccak(b"annotation-chain-test " + name.encode())


class Kit:
    """A 4-validator chain on LevelDB, gold every 2 blocks, blocks built from signed work and really signed."""

    def __init__(self, path) -> None:
        params = DEFAULT_PARAMS.copy(gold_interval_blocks=2, annotator_min_gold=3, committee_size=3)
        self.genesis = make_genesis(DEV_CHAIN_ID, [get_address(k) for k in KEYS], params=params, gold_tasks=GOLD,
                                    timestamp_ms=1_700_000_000_000)
        self.db = LevelDB(path)
        self.chain = Chain.from_genesis(self.db, self.genesis, make_work_rules)
        self.commit = EMPTY_COMMIT
        self.node = ChainNode(self.chain)

    @property
    def state(self):
        return self.chain.state

    def block(self, *work: tuple[bytes, str, object]) -> dict[int, str]:
        """Build and import the next block; returns {index: reason} of the work the rules refused."""
        nonces: dict[bytes, int] = {}
        raws = []
        for signer, kind, payload in work:
            address = get_address(signer)
            nonce = nonces.get(address, self.state.get_nonce(address))
            nonces[address] = nonce + 1
            raws.append(sign_work_transaction(signer, chain_id=self.genesis.chain_id, nonce=nonce, kind=kind,
                                              data=rlp.encode(payload)))
        built, self.commit = append_block(self.chain, raws, get_address(KEYS[0]), self.commit,
                                          lambda header: sign_commit(header, KEYS, self.genesis.chain_id))
        assert not built.skipped, built.skipped
        return dict(built.failures)

    def get_open_gold(self, signer: bytes) -> list[tuple[bytes, int]]:
        """(task id, the shown index of the right answer) of open gold tasks drawn for `signer`, unanswered."""
        address = get_address(signer)
        found = []
        for task_id in get_open_tasks(self.state):
            task = get_task(self.state, task_id)
            if (is_gold_task(task) and address in {s.address for s in task.annotators}
                    and address not in {a.address for a in task.annotations}):
                found.append((task_id, compute_gold_presentation(GOLD[task.gold - 1], task_id)[2]))
        return found

    def measure(self, answers: dict[bytes, list[bool]]) -> None:
        """Run blocks until each signer has answered its scripted gold answers (True: right, False: wrong)."""
        remaining = {signer: list(script) for signer, script in answers.items()}
        for _ in range(60):
            work = []
            for signer, script in remaining.items():
                for task_id, answer in self.get_open_gold(signer)[:len(script)]:
                    right = script.pop(0)
                    work.append((signer, "annotation", Annotation(task_id, answer if right else 1 - answer)))
            assert not self.block(*work)
            if not any(remaining.values()) and not any(
                    is_gold_task(get_task(self.state, t)) for t in get_open_tasks(self.state)
                    if get_task(self.state, t).annotations):
                return
        raise AssertionError(f"gold answers left over: {remaining}")


def test_a_careful_person_outweighs_a_careless_model_with_validator_weight(tmp_path):
    kit = Kit(tmp_path / "db")
    person, model, creator = key("person"), KEYS[0], key("creator")
    assert kit.block((person, "register_annotator", RegisterAnnotator(b"person"))) == {}
    assert kit.block((model, "register_annotator", RegisterAnnotator(b"model:" + b"ab" * 32))) == {}
    kit.measure({person: [True] * 4, model: [True, False, True, True]})
    assert get_recognition(kit.state, get_address(model)) > 10**18 > get_recognition(kit.state, get_address(person))

    kit.block((creator, "annotation_task", ROME))
    task_id = compute_work_id(get_address(creator), 0)
    task = get_task(kit.state, task_id)
    assert {s.address for s in task.annotators} == {get_address(person), get_address(model)}
    assert kit.block((model, "annotation", Annotation(task_id, 1)), (person, "annotation", Annotation(task_id, 0))) == {}

    task = get_task(kit.state, task_id)
    assert task.status == TaskStatus.RECOGNISED and task.label_index == 0  # "true": the person's label
    weights = {a.address: a.weight for a in task.annotations}
    assert weights[get_address(person)] > weights[get_address(model)] > 0
    assert get_annotator(kit.state, get_address(person)).units_claimed == kit.chain.rules.params.annotation_units
    assert get_annotator(kit.state, get_address(model)).units_claimed == 0
    assert kit.state.get_balance(get_address(person)) > 0


def test_sybil_keys_answering_their_own_task_are_not_drawn_and_earn_nothing(tmp_path):
    kit = Kit(tmp_path / "db")
    creator, s2, s3 = key("sybil 1"), key("sybil 2"), key("sybil 3")
    honest = key("honest")
    # Nobody measured yet: the self-dealing task is refused outright.
    failures = kit.block((s2, "register_annotator", RegisterAnnotator(b"person")),
                         (s3, "register_annotator", RegisterAnnotator(b"person")),
                         (creator, "annotation_task", AnnotationTask(b"buy now", [b"spam", b"ham"], 2)))
    assert failures == {2: failures[2]} and "no eligible annotator" in failures[2]

    assert kit.block((honest, "register_annotator", RegisterAnnotator(b"person"))) == {}
    kit.measure({honest: [True] * 3})
    kit.block((creator, "annotation_task", AnnotationTask(b"buy now", [b"spam", b"ham"], 2)))
    task_id = compute_work_id(get_address(creator), 1)
    drawn = {s.address for s in get_task(kit.state, task_id).annotators}
    assert drawn == {get_address(honest)}  # the sybils have no gold record: they weigh nothing and are never drawn
    failures = kit.block((s2, "annotation", Annotation(task_id, 1)), (s3, "annotation", Annotation(task_id, 1)),
                         (creator, "annotation", Annotation(task_id, 1)))
    assert len(failures) == 3 and all("not drawn for this task" in reason for reason in failures.values())
    kit.block((honest, "annotation", Annotation(task_id, 0)))
    assert get_task(kit.state, task_id).status == TaskStatus.RECOGNISED
    for signer in (creator, s2, s3):
        assert kit.state.get_balance(get_address(signer)) == 0
        assert get_recognition(kit.state, get_address(signer)) == 0


def test_gold_measures_accuracy_pays_nothing_and_is_shown_like_any_task(tmp_path):
    kit = Kit(tmp_path / "db")
    person = key("person")
    address = get_address(person)
    kit.block((person, "register_annotator", RegisterAnnotator(b"person")))
    shown = muagic_get_annotator(kit.node, address)
    assert shown["operator"] == "person" and shown["goldSeen"] == "0x0" and shown["weightPpm"] == "0x0"
    while not kit.get_open_gold(person):
        kit.block()
    [(task_id, answer)] = kit.get_open_gold(person)
    [assigned] = muagic_get_assigned_tasks(kit.node, address)
    gold = GOLD[get_task(kit.state, task_id).gold - 1]
    assert assigned["taskId"] == "0x" + task_id.hex() and assigned["content"] == gold.content.decode()
    assert sorted(assigned["labels"]) == ["false", "true"] and set(assigned) == {
        "taskId", "content", "labels", "deadlineBlock", "k"}
    view = muagic_get_annotation_task(kit.node, task_id)
    assert view["gold"] is False and view["status"] == "open" and address.hex() in view["annotators"][0]
    assert view["requester"] is None and view["content"] == assigned["content"] and view["labels"] == assigned["labels"]
    rpc = RPCDispatcher(kit.node)  # the same, through JSON-RPC as the CLI and the web page call it
    for name in ("muagic_getAnnotator", "muagic_getAssignedTasks"):
        request = {"jsonrpc": "2.0", "id": 1, "method": name, "params": ["0x" + address.hex()]}
        assert "result" in json.loads(rpc.handle(json.dumps(request).encode())), name
    request = {"jsonrpc": "2.0", "id": 1, "method": "muagic_getAnnotator", "params": ["0x12"]}
    assert json.loads(rpc.handle(json.dumps(request).encode()))["error"]["code"] == -32602

    kit.block((person, "annotation", Annotation(task_id, 1 - answer)))  # wrong
    assert muagic_get_annotation_task(kit.node, task_id)["gold"] is True
    record = get_annotator(kit.state, address)
    assert (record.gold_seen, record.gold_correct) == (1, 0)
    kit.measure({person: [True, True, True]})
    record = get_annotator(kit.state, address)
    assert (record.gold_seen, record.gold_correct) == (4, 3)
    shown = muagic_get_annotator(kit.node, address)
    assert int(shown["accuracyPpm"], 16) == 666_666 and int(shown["weightPpm"], 16) == 333_333
    assert kit.state.get_balance(address) == 0 and record.units_claimed == 0  # gold is measurement, not work


def test_linked_annotators_agreeing_share_one_claim(tmp_path):
    kit = Kit(tmp_path / "db")
    twin_a, twin_b, other, creator = key("twin a"), key("twin b"), key("other"), key("creator")
    kit.block((twin_a, "register_annotator", RegisterAnnotator(b"person")),
              (twin_b, "register_annotator", RegisterAnnotator(b"person")))  # created together: linked
    kit.block((other, "register_annotator", RegisterAnnotator(b"person")))
    kit.measure({twin_a: [True] * 3, twin_b: [True] * 3, other: [True] * 3})
    kit.block((creator, "annotation_task", ROME))
    task_id = compute_work_id(get_address(creator), 0)
    assert len(get_task(kit.state, task_id).annotators) == 3
    kit.block(*[(signer, "annotation", Annotation(task_id, 0)) for signer in (twin_a, twin_b, other)])
    assert get_task(kit.state, task_id).status == TaskStatus.RECOGNISED
    units = kit.chain.rules.params.annotation_units
    claimed = {name: get_annotator(kit.state, get_address(k)).units_claimed
               for name, k in (("a", twin_a), ("b", twin_b), ("other", other))}
    assert claimed == {"a": units // 2, "b": units // 2, "other": units}

"""Typed errors of the light client: every lie an RPC server can tell has its own class.

`LightClientError` is the package base. `RPCFailure` covers a server that does not
answer (timeouts, refused connections, JSON-RPC errors, missing results);
`VerificationFailed` covers a server that answers with something that does not
verify. Each error carries what was got and what was expected, and its message
names the height or account and the field that was wrong, so a user reading it
knows which claim of the server was false.
"""
from __future__ import annotations


def _show(value: object) -> object:
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    return value


class LightClientError(Exception):
    """Base of every error the light client raises on bad input from outside."""

    def __init__(self, message: str, got: object = None, expected: object = None) -> None:
        self.got = got
        self.expected = expected
        if got is not None or expected is not None:
            message = f"{message}: got {_show(got)!r}, expected {_show(expected)!r}"
        super().__init__(message)


# --- the server does not answer ---------------------------------------------------------------------

class RPCFailure(LightClientError):
    """The RPC server did not give an answer (unreachable, timed out, or a JSON-RPC error)."""


class RPCTimeout(RPCFailure):
    """The RPC server did not answer within the client's timeout."""


class ResponseTooLarge(RPCFailure):
    """The server's answer grew past the client's response size cap (reading stopped there)."""


class MalformedResponse(RPCFailure):
    """The server's answer is not a JSON-RPC answer: not JSON, too deep, or a batch with bad or missing ids."""


class HeaderWithheld(RPCFailure):
    """The server did not provide a header, commit or validator set the client needs."""

    def __init__(self, what: str, height: int, got: object = None) -> None:
        self.height = height
        self.what = what
        super().__init__(f"server withheld the {what} at height {height}", got=got, expected=f"the {what}")


# --- the server answers with a lie --------------------------------------------------------------------

class VerificationFailed(LightClientError):
    """Something the server sent does not verify; nothing from it is shown."""


class GenesisMismatch(VerificationFailed):
    """The server's block 0 is not the block 0 computed from the genesis file (another network, or a lie)."""


class ForgedHeader(VerificationFailed):
    """A header does not match what the verified chain requires (hash, parent link, number, validators...)."""

    def __init__(self, height: int, field: str, got: object, expected: object) -> None:
        self.height = height
        self.field = field
        super().__init__(f"forged header at height {height}: {field}", got=got, expected=expected)


class InvalidHeaderCommit(VerificationFailed):
    """A commit is not a valid quorum certificate for the header (bad signature, unknown signer, wrong block)."""

    def __init__(self, height: int, reason: str, got: object = None, expected: object = None) -> None:
        self.height = height
        self.reason = reason
        super().__init__(f"invalid commit for height {height}: {reason}", got=got, expected=expected)


class CommitBelowQuorum(InvalidHeaderCommit):
    """The commit's valid signatures carry no more than 2/3 of the signing set's weight."""

    def __init__(self, height: int, weight: int, total: int) -> None:
        self.weight = weight
        self.total = total
        super().__init__(height, "signed weight is not more than 2/3 of the validator set",
                         got=weight, expected=f"> {2 * total // 3} of {total}")


class WrongValidatorSet(VerificationFailed):
    """A validator set does not hash to the validators_hash the verified header names."""

    def __init__(self, height: int, got: bytes, expected: bytes) -> None:
        self.height = height
        super().__init__(f"wrong validator set for height {height}: its hash", got=got, expected=expected)


class InvalidProof(VerificationFailed):
    """An eth_getProof answer does not prove the account (or slot) against the verified state root."""

    def __init__(self, address: bytes, height: int, reason: str, got: object = None, expected: object = None) -> None:
        self.address = address
        self.height = height
        self.reason = reason
        super().__init__(f"invalid proof for 0x{address.hex()} at height {height}: {reason}", got=got,
                         expected=expected)


class ReportedValueMismatch(VerificationFailed):
    """The server reported a value (balance, nonce, recognition...) other than the one its proof proves."""

    def __init__(self, address: bytes, height: int, field: str, got: object, expected: object) -> None:
        self.address = address
        self.height = height
        self.field = field
        super().__init__(f"server reported a false {field} for 0x{address.hex()} at height {height}",
                         got=got, expected=expected)


class BlockBodyMismatch(VerificationFailed):
    """A block body (transactions) does not hash to the verified header's root."""

    def __init__(self, height: int, field: str, got: object, expected: object) -> None:
        self.height = height
        self.field = field
        super().__init__(f"block body at height {height} does not match the header's {field}", got=got,
                         expected=expected)


class ConflictingUpstreams(VerificationFailed):
    """Two upstreams each presented a block that verified, different at the same height.

    Both carry a > 2/3 commit, so more than 1/3 of the validators signed two blocks (equivocation);
    nothing is served until an operator looks.
    """

    def __init__(self, height: int, first: str, first_hash: bytes, second: str, second_hash: bytes) -> None:
        self.height = height
        self.upstreams = (first, second)
        super().__init__(f"upstreams disagree on verified block {height}: {first} vs {second}",
                         got=second_hash, expected=first_hash)


class StaleHead(LightClientError):
    """The verified head is behind what an upstream claims and has not advanced in time: "latest" would lie."""

    def __init__(self, verified: int, claimed: int, reason: str) -> None:
        self.verified = verified
        self.claimed = claimed
        super().__init__(reason, got=verified, expected=f"{claimed} (the best upstream head)")


class NotVerified(LightClientError):
    """The client has no verified header for what was asked (e.g. beyond the verified head)."""

"""The magicoin light client: follows headers from genesis (or a checkpoint), checks quorum
certificates and Merkle proofs, and serves a small verified JSON-RPC.

Public surface: `LightClient` (node.light.client), the typed errors
(node.light.exceptions), the transports (node.light.transport) and
`serve_light` (node.light.server).
"""
from node.light.client import LightClient, LightStats, VerifiedBlock, compute_genesis_header
from node.light.exceptions import (
    BlockBodyMismatch,
    CommitBelowQuorum,
    ForgedHeader,
    GenesisMismatch,
    HeaderWithheld,
    InvalidHeaderCommit,
    InvalidProof,
    LightClientError,
    NotVerified,
    ReportedValueMismatch,
    RPCFailure,
    RPCTimeout,
    VerificationFailed,
    WrongValidatorSet,
)
from node.light.proofs import VerifiedAccount, verify_account_proof
from node.light.transport import DispatcherTransport, HTTPTransport

__all__ = [
    "BlockBodyMismatch", "CommitBelowQuorum", "DispatcherTransport", "ForgedHeader", "GenesisMismatch",
    "HTTPTransport", "HeaderWithheld", "InvalidHeaderCommit", "InvalidProof", "LightClient", "LightClientError",
    "LightStats", "NotVerified", "RPCFailure", "RPCTimeout", "ReportedValueMismatch", "VerificationFailed",
    "VerifiedAccount", "VerifiedBlock", "WrongValidatorSet", "compute_genesis_header", "verify_account_proof",
]

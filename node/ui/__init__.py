"""The annotation page: static files served by the node's HTTP app at `/ui`.

`index.html`, `app.js` and `style.css` are a plain page over the node's own
JSON-RPC (same origin, `POST /`): a person unlocks a keystore, registers as an
annotator, labels the tasks the chain drew for them and reads their record.
The keystore is decrypted in the browser by the vendored ethers bundle, and every
transaction is encoded and signed there by the magicoin JS client (clients/js,
bundled with viem as `vendor/magicoin-client.js`); the passphrase and the key
never reach the server, which only serves files and relays signed transactions.

Serving is by whitelist: the files that ship in this folder are listed once, and
a request names one of them exactly or gets 404. No part of the request path
becomes a filesystem path, so `..`, encoded separators or symlinks lead nowhere.
"""
from __future__ import annotations

from pathlib import Path

from node.asgi import Send, send_json

UI_ROOT = Path(__file__).resolve().parent
PREFIX = "/ui"
INDEX = "index.html"

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".md": "text/markdown; charset=utf-8",
}

# Scripts and styles from this origin only, requests only to this origin (the JSON-RPC):
# a page that holds a decrypted key in memory must not load or send anything elsewhere.
SECURITY_HEADERS = [
    (b"content-security-policy", (b"default-src 'none'; script-src 'self'; style-src 'self'; "
                                  b"img-src 'self' data:; connect-src 'self'; base-uri 'none'; "
                                  b"form-action 'none'; frame-ancestors 'none'")),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-cache"),
]


def list_ui_files(root: Path = UI_ROOT) -> dict[str, Path]:
    """{"app.js": path, "vendor/ethers.umd.min.js": path, ...}: every servable file under `root`."""
    files = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink() and path.suffix in CONTENT_TYPES:
            relative = path.relative_to(root)
            if not any(part.startswith((".", "_")) for part in relative.parts):
                files[relative.as_posix()] = path
    return files


def is_ui_path(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


class UIFiles:
    """GET/HEAD `/ui` (the page) and `/ui/<file>` (its assets), read once and kept in memory."""

    def __init__(self, root: Path = UI_ROOT) -> None:
        self.files = list_ui_files(root)
        self.cache: dict[str, bytes] = {}

    def resolve(self, path: str) -> str | None:
        """The whitelisted name a request path asks for, or None."""
        if path in (PREFIX, PREFIX + "/"):
            return INDEX if INDEX in self.files else None
        name = path[len(PREFIX) + 1:] if path.startswith(PREFIX + "/") else ""
        return name if name in self.files else None

    def read(self, name: str) -> bytes:
        if name not in self.cache:
            self.cache[name] = self.files[name].read_bytes()
        return self.cache[name]

    async def handle(self, scope: dict, send: Send) -> None:
        method, path = scope["method"], scope["path"]
        if method not in ("GET", "HEAD"):
            await send_json(send, 405, {"error": {"message": f"{method} is not served on {PREFIX}",
                                                  "type": "method_not_allowed"}}, [(b"allow", b"GET, HEAD")])
            return
        name = self.resolve(path)
        if name is None:
            await send_json(send, 404, {"error": {"message": f"no file {path}", "type": "not_found"}})
            return
        body = self.read(name)
        content_type = CONTENT_TYPES[Path(name).suffix].encode()
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", content_type), (b"content-length", str(len(body)).encode())] + SECURITY_HEADERS})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})

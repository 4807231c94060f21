"""todo-api: a team's own provider (standard library only), with the standard Pact
provider-state endpoint a Pact verifier posts to:

    POST /_pact/provider-states  {"state": "...", "params": {...}, "action": "setup" | "teardown"}

    python3 provider.py PORT

TODO_BREAK=rename-title makes it answer `name` instead of `title`: a breaking change the
contract gate must catch.
"""

import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TODOS: dict = {}
BREAK = os.environ.get("TODO_BREAK", "")


class Handler(BaseHTTPRequestHandler):
    def answer(self, status: int, body=None) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/health":
            return self.answer(200, {"status": "ok"})
        if self.path.startswith("/todos/"):
            todo = TODOS.get(self.path.rsplit("/", 1)[1])
            if todo is None:
                return self.answer(404, {"error": "no such todo"})
            if BREAK == "rename-title":
                todo = {"id": todo["id"], "name": todo["title"], "done": todo["done"]}
            return self.answer(200, todo)
        self.answer(404, {"error": "no such path"})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            return self.answer(400, {"error": "the body is not JSON"})
        if self.path != "/_pact/provider-states":
            return self.answer(404, {"error": "no such path"})
        state, params, action = body.get("state"), body.get("params") or {}, body.get("action", "setup")
        if state == "a todo exists":
            key = str(params.get("id", 1))
            if action == "setup":
                TODOS[key] = {"id": int(key), "title": params.get("title", "a todo"), "done": False}
            else:
                TODOS.pop(key, None)
        elif state == "no todos exist":
            TODOS.clear()
        else:
            return self.answer(400, {"error": f"unknown provider state {state!r}"})
        self.answer(200, {})

    def log_message(self, *args) -> None:
        sys.stderr.write("todo-api: " + (args[0] % args[1:]) + "\n")


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()

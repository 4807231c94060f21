"""The consumer test of `todo-web`, a team's web front, written with pact-python (PyPI).

It describes what todo-web needs of `todo-api` and checks todo-web's own client code
against Pact's mock server; the pact it writes is what `gauntlet contracts verify`
replays against the real provider.

    python3 consumer.py pacts/      # writes pacts/todo-web-todo-api.json
"""

import json
import sys
import urllib.request

from pact import Pact, match


def fetch_todo(base_url: str, todo_id: int) -> dict:
    """todo-web's client: what it reads of a todo, and how."""
    with urllib.request.urlopen(f"{base_url}/todos/{todo_id}") as answer:
        todo = json.load(answer)
    return {"id": todo["id"], "title": todo["title"], "done": todo["done"]}


def main(out: str) -> None:
    pact = Pact("todo-web", "todo-api").with_specification("V4")
    (
        pact.upon_receiving("a request for an existing todo")
        .given("a todo exists", id=7, title="write the contract")
        .with_request("GET", "/todos/7")
        .will_respond_with(200)
        .with_body(
            {"id": match.int(7), "title": match.str("write the contract"), "done": match.bool(False)},
            content_type="application/json",
        )
    )
    (
        pact.upon_receiving("a request for a missing todo")
        .given("no todos exist")
        .with_request("GET", "/todos/404")
        .will_respond_with(404)
    )
    with pact.serve() as server:
        assert fetch_todo(str(server.url), 7)["title"] == "write the contract"
        try:
            urllib.request.urlopen(f"{server.url}/todos/404")
            raise AssertionError("a missing todo must answer 404")
        except urllib.error.HTTPError as e:
            assert e.code == 404, e.code
    pact.write_file(out, overwrite=True)
    print(f"wrote the pact of todo-web -> todo-api into {out}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "pacts")

#!/usr/bin/env python3
"""An external checker for Gauntlet, as a user would write one: every acknowledged
`add` must be in the last final `read`.

Gauntlet runs it in the scenario's folder with three paths in its environment:
GAUNTLET_HISTORY and GAUNTLET_FINAL_READS (JSON Lines, one Jepsen op map per line:
type, f, value, process, time, index; `gauntlet schema history`) and GAUNTLET_VERDICT,
where it writes its verdict (`gauntlet schema verdict`). Arguments name the `f`s:
lost_adds.py [ADD_F [READ_F]], default "add" and "read".
"""
import json
import os
import sys


def ops(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def key(v):
    return v if isinstance(v, str) else json.dumps(v, separators=(",", ":"))


def main():
    add_f = sys.argv[1] if len(sys.argv) > 1 else "add"
    read_f = sys.argv[2] if len(sys.argv) > 2 else "read"
    history = ops(os.environ["GAUNTLET_HISTORY"])
    finals = [o for o in ops(os.environ["GAUNTLET_FINAL_READS"]) if o["type"] == "ok" and o["f"] == read_f]
    verdict = {"valid": "unknown", "clauses": []}
    if not finals:
        verdict["unknown_because"] = f"no final `{read_f}` answered"
    else:
        present = {key(v) for v in finals[-1]["value"]}
        acked = [o for o in history if o["type"] == "ok" and o["f"] == add_f]
        lost = [o for o in acked if key(o["value"]) not in present]
        verdict["valid"] = "invalid" if lost else "valid"
        verdict["clauses"].append({
            "name": "lost",
            "rule": "every acknowledged add is in the final read",
            "checked": len(acked),
            "counterexamples": [
                {"subject": f"element {key(o['value'])}",
                 "detail": f"acknowledged at {o['time'] / 1e9:.3f} s (op {o['index']}), absent from the final read"}
                for o in lost[:100]
            ],
        })
    with open(os.environ["GAUNTLET_VERDICT"], "w", encoding="utf-8") as f:
        json.dump(verdict, f)


if __name__ == "__main__":
    main()

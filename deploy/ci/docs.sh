#!/usr/bin/env bash
# Docs where they say something: every Rust source file of a crate starts
# with a module doc (`//!`), and every item another crate can use (`pub`, not
# `pub(crate)`: functions, types, traits, constants, statics, modules
# declared inline) has a `///` doc comment above it (attributes may stand
# between). Fields and enum variants are left to judgement: a comment that
# repeats the name says nothing. Prints each miss as file:line and exits 1
# when there is one.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
git ls-files '*/src/*.rs' '*/src/**/*.rs' | grep -v '/tests\.rs$' | grep -v '^store/vendor/' | python3 -c '
import re, sys
item = re.compile(r"^\s*pub (async fn|fn|struct|enum|trait|type|const|static|unsafe fn)\b")
misses = []
for path in sys.stdin.read().split():
    lines = open(path, encoding="utf-8").read().split("\n")
    first = next((l for l in lines if l.strip()), "")
    if not first.startswith("//!"):
        misses.append(f"{path}:1: no module doc (//!)")
    for n, line in enumerate(lines):
        if not item.match(line) or "$" in line:
            continue
        j, documented = n - 1, False
        while j >= 0:
            text = lines[j].strip()
            if text.startswith("///"):
                documented = True
                break
            if text.startswith("#["):
                j -= 1
            elif text.endswith("]"):
                # The last line of an attribute spanning lines: up to its start.
                while j >= 0 and not lines[j].strip().startswith("#["):
                    j -= 1
                j -= 1
            else:
                break
        if not documented:
            misses.append(f"{path}:{n + 1}: public item without a doc comment: {line.strip()}")
for miss in misses:
    print(miss)
sys.exit(1 if misses else 0)
'

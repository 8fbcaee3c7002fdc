#!/usr/bin/env python3
"""Validates JSON documents against a JSON Schema (draft 2020-12) with python3-jsonschema, an
implementation that is not ours. Usage: validate_json.py SCHEMA FILE, where FILE holds one JSON
document per line. Prints each failure with its line; exits 0 when every document is valid,
1 when one is not, 2 on a bad schema or unreadable input."""
import json
import sys

import jsonschema


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        with open(sys.argv[1], encoding="utf-8") as f:
            schema = json.load(f)
        jsonschema.Draft202012Validator.check_schema(schema)
        with open(sys.argv[2], encoding="utf-8") as f:
            lines = [line for line in f.read().split("\n") if line.strip()]
    except (OSError, ValueError, jsonschema.SchemaError) as e:
        print(f"validate_json: {e}", file=sys.stderr)
        return 2
    validator = jsonschema.Draft202012Validator(schema)
    failed = 0
    for number, line in enumerate(lines, 1):
        for error in validator.iter_errors(json.loads(line)):
            failed += 1
            path = "/".join(str(p) for p in error.absolute_path)
            print(f"line {number}: at /{path}: {error.message}")
    print(f"{len(lines)} document(s), {failed} error(s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

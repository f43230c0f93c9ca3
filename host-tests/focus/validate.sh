#!/usr/bin/env bash
# Validates a FOCUS Cost and Usage CSV with the FinOps Foundation's validator.
#
# Usage: host-tests/focus/validate.sh FILE.csv
#        host-tests/focus/validate.sh --install   (only install the validator; for scripts/setup)
#
# Exit 0: no failed check that applies to a FOCUS 1.3 dataset. Exit 1: a check
# failed (the failures are printed). Exit 3: the validator is not installed and
# could not be installed (message says why).
#
# Which validator: the FinOps Foundation's `focus-validator`. Its releases that
# know FOCUS 1.2+ rule models (2.x) need Python >= 3.12; on the project's Python
# 3.11 virtualenv pip can only install 1.0.0, which knows FOCUS <= 1.0. So this
# script keeps its own Python >= 3.12 virtualenv in .venv/focus312 (inside the
# git-ignored .venv) and installs focus-validator 2.x there on first use.
#
# Which model: the FOCUS 1.3 rule model when the validator has it locally. The
# 2.x package ships only the 1.2 model (model-1.2.0.1.json) and downloads newer
# ones from GitHub, which this workplace cannot reach, so the script falls back
# to the 1.2 model and says so; put a model-1.3*.json into FOCUS_MODEL_DIR to
# validate against 1.3 itself. Under the 1.2 model, checks that FOCUS 1.3 no
# longer applies (ProviderName and PublisherName, deprecated in 1.3 and removed
# in 1.4) are reported as not applicable instead of failures.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
FILE="${1:?usage: validate.sh FILE.csv | --install}"
VENV="$ROOT/.venv/focus312"
VALIDATOR="$VENV/bin/focus-validator"

find_python() {
  local c
  # 3.12 first: focus-validator pins NumPy < 2, which has wheels up to 3.12 only
  # (on 3.13 pip would compile NumPy from source).
  for c in python3.12 "$HOME"/.pyenv/versions/3.12*/bin/python \
           python3.13 "$HOME"/.pyenv/versions/3.13*/bin/python; do
    if command -v "$c" >/dev/null 2>&1 \
       && "$c" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' 2>/dev/null; then
      echo "$c"
      return 0
    fi
  done
  return 1
}

if [ ! -x "$VALIDATOR" ]; then
  if ! PY=$(find_python); then
    echo "validate.sh: focus-validator 2.x needs Python >= 3.12 and none was found" >&2
    exit 3
  fi
  echo "validate.sh: installing focus-validator into $VENV (Python $("$PY" -c 'import platform; print(platform.python_version())'))" >&2
  "$PY" -m venv "$VENV"
  # pyarrow < 21: newer wheels need NumPy 2, which focus-validator's pins exclude.
  if ! "$VENV/bin/pip" install --quiet --disable-pip-version-check \
        'focus-validator>=2.2,<3' 'pyarrow<21' >&2; then
    echo "validate.sh: pip could not install focus-validator" >&2
    exit 3
  fi
fi

if [ "$FILE" = --install ]; then
  # (The validator writes focus_validator_detailed.log into its working directory.)
  # Its whole output is taken, then the first line printed: `| head -1` closed
  # the pipe under it, and with pipefail its broken-pipe exit failed setup at random.
  versions=$(cd "$VENV" && "$VALIDATOR" --supported-versions --block-download 2>/dev/null)
  echo "${versions%%$'\n'*}"
  exit 0
fi
FILE="$(cd "$(dirname "$FILE")" && pwd)/$(basename "$FILE")"

SITE=$("$VENV/bin/python" -c 'import focus_validator, os; print(os.path.dirname(os.path.dirname(focus_validator.__file__)))')
RULES="$SITE/focus_validator/rules"
VERSION=1.3
ARGS=()
if [ -n "${FOCUS_MODEL_DIR:-}" ] && ls "$FOCUS_MODEL_DIR"/model-1.3*.json >/dev/null 2>&1; then
  ARGS+=(--rule-set-path "$FOCUS_MODEL_DIR")
elif ! ls "$RULES"/model-1.3*.json >/dev/null 2>&1; then
  echo "validate.sh: the FOCUS 1.3 rule model is not available offline (the validator downloads it from GitHub);"
  echo "validate.sh: validating against the newest model it ships, $(basename "$(ls "$RULES"/model-*.json | sort | tail -1)")"
  VERSION=1.2
fi

OUT=$(mktemp)
trap 'rm -f "$OUT"' EXIT
# The validator reads its currency list by a path relative to its package
# directory, so it runs from site-packages.
set +e
(cd "$SITE" && "$VALIDATOR" --data-file "$FILE" --validate-version "$VERSION" \
   --block-download "${ARGS[@]}" --show-violations) >"$OUT" 2>&1
RC=$?
set -e
if ! grep -q '^Total: ' "$OUT"; then
  cat "$OUT"
  echo "validate.sh: the validator did not produce a report (exit $RC)"
  exit 1
fi
grep -m1 '^Total: ' "$OUT"

# Which failures count. Under the 1.3 model, all. Under the 1.2 model, a check
# is not applicable to FOCUS 1.3 data when it is about ProviderName or
# PublisherName (the rule's own column, a column its condition or requirement
# reads), or is a composite that failed only through such checks.
MODEL="$(ls "$RULES"/model-"$VERSION"*.json 2>/dev/null | sort | tail -1)"
"$VENV/bin/python" - "$OUT" "$VERSION" "${MODEL:-}" <<'PY'
import json, re, sys

out_file, version, model_file = sys.argv[1], sys.argv[2], sys.argv[3]
failed = {}
for line in open(out_file, encoding="utf-8", errors="replace"):
    m = re.match(r"^\W*([A-Za-z]+-[A-Z]-\d+-[A-Z]): FAIL\s+\((.*)\)\s*$", line.strip())
    if m:
        failed[m.group(1)] = m.group(2)

gone = {"ProviderName", "PublisherName"}
not_applicable = set()
rules = json.load(open(model_file))["ModelRules"] if model_file else {}

# A rule that is one alternative of an OR which passed ("InvoiceId MUST be null
# when not invoiced" OR "MUST NOT be null when invoiced") did not apply: the
# other alternative did.
alternative_of = {}
for rule_id, rule in rules.items():
    req = rule.get("ValidationCriteria", {}).get("Requirement", {})
    if isinstance(req, dict) and req.get("CheckFunction") == "OR":
        for item in req.get("Items", []):
            if isinstance(item, dict) and item.get("CheckFunction") == "CheckModelRule":
                alternative_of.setdefault(item.get("ModelRuleId"), []).append(rule_id)
other_branch = {
    r for r in failed
    if alternative_of.get(r) and all(parent not in failed for parent in alternative_of[r])
}

if version == "1.2" and model_file:

    def columns(node, acc):
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("ColumnName", "ColumnAName", "ColumnBName") and isinstance(value, str):
                    acc.add(value)
                columns(value, acc)
        elif isinstance(node, list):
            for item in node:
                columns(item, acc)
        return acc

    for rule_id, rule in rules.items():
        if rule_id.split("-")[0] in gone or columns(rule.get("ValidationCriteria", {}), set()) & gone:
            not_applicable.add(rule_id)
    changed = True
    while changed:
        changed = False
        for rule_id, msg in failed.items():
            if rule_id in not_applicable:
                continue
            m = re.search(r"failed child rules: \[([^\]]*)\]", msg)
            if m:
                children = [c.strip() for c in m.group(1).split(",") if c.strip()]
                if children and all(c in not_applicable for c in children):
                    not_applicable.add(rule_id)
                    changed = True

real = 0
for rule_id, msg in failed.items():
    if rule_id in other_branch:
        print(f"alternative not taken (its OR rule {', '.join(alternative_of[rule_id])} passed): {rule_id}")
    elif rule_id in not_applicable:
        print(f"not applicable to FOCUS 1.3 (ProviderName/PublisherName, replaced in 1.3): {rule_id}")
    else:
        print(f"FAILED {rule_id}: {msg}")
        real += 1
na = sum(1 for r in failed if r in not_applicable or r in other_branch)
print(f"FOCUS {version} model: {real} failed check(s) that apply, {na} that do not apply")
sys.exit(1 if real else 0)
PY

#!/usr/bin/env bash
# Dependency audit of requirements/lock.txt with pip-audit: REPORT ONLY, never fails.
#
# Run by `make lint` (a pre-commit hook) and `make reliability`. Prints the vulnerable packages
# (or that there are none) and keeps a summary in test-output/pip-audit.json, which the security
# test (tests/unit/test_security.py, check "dependency_audit") turns into a reliability record
# without network. Offline, or when the vulnerability service answers for no package, it prints
# "pip-audit skipped: offline ..." and exits 0: a CVE published tomorrow, or a missing network,
# must not turn yesterday's commit red. Exit code is always 0.
#
# Environment: PIP_AUDIT_LOCK (default requirements/lock.txt), PIP_AUDIT_OUT (default
# test-output/pip-audit.json), PIP_AUDIT_TIMEOUT (seconds for the whole audit, default 300).
set -uo pipefail
cd "$(dirname "$0")/.."

LOCK=${PIP_AUDIT_LOCK:-requirements/lock.txt}
OUT=${PIP_AUDIT_OUT:-test-output/pip-audit.json}
LIMIT=${PIP_AUDIT_TIMEOUT:-300}
PY=.venv/bin/python
AUDIT=.venv/bin/pip-audit

if [[ ! -x $AUDIT || ! -x $PY ]]; then
  echo "pip-audit skipped: not installed (run \`make setup\`)"
  exit 0
fi
mkdir -p "$(dirname "$OUT")"
raw=$(mktemp)
log=$(mktemp)
trap 'rm -f "$raw" "$log"' EXIT

# --no-deps --disable-pip: the lock pins every package, so nothing is resolved or installed.
timeout "$LIMIT" "$AUDIT" -r "$LOCK" --no-deps --disable-pip --progress-spinner off \
  --timeout 15 -f json -o "$raw" >"$log" 2>&1
code=$?

"$PY" - "$raw" "$log" "$code" "$OUT" "$LOCK" <<'EOF'
"""Summarise pip-audit's JSON (or its failure) for people and for the reliability report."""

import hashlib
import json
import re
import sys
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path

raw, log, code, out, lock = sys.argv[1:]
log_text = Path(log).read_text(errors="replace")
summary = {
    "tool": f"pip-audit {version('pip-audit')}",
    "ran_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    "source": lock,
    "lock_sha256": hashlib.sha256(Path(lock).read_bytes()).hexdigest(),
    "status": "skipped",
    "reason": "",
    "packages": 0,
    "audited": 0,
    "not_audited": 0,
    "vulnerable": [],
}
try:
    data = json.loads(Path(raw).read_text())
except (OSError, ValueError):
    data = None

OFFLINE = re.compile(
    r"ConnectionError|Max retries|NameResolution|Temporary failure in name resolution|"
    r"timed out|Connection refused|Network is unreachable|ProxyError",
    re.I,
)
if data is None:
    last = (log_text.strip().splitlines() or ["(no output)"])[-1]
    if int(code) == 124:
        summary["reason"] = "offline: pip-audit did not finish in time"
    elif OFFLINE.search(log_text):
        summary["reason"] = f"offline: {last}"
    else:
        summary["reason"] = f"pip-audit failed (exit {code}): {last}"
else:
    deps = data.get("dependencies", [])
    skipped = [d for d in deps if d.get("skip_reason")]
    audited = [d for d in deps if not d.get("skip_reason")]
    vulnerable = [
        {
            "name": d["name"],
            "version": d.get("version", ""),
            "id": v.get("id", ""),
            "fix_versions": v.get("fix_versions", []),
        }
        for d in audited
        for v in d.get("vulns", [])
    ]
    summary.update(
        packages=len(deps), audited=len(audited), not_audited=len(skipped), vulnerable=vulnerable
    )
    if deps and not audited:
        # Every lookup failed: the vulnerability service is out of reach from this machine
        # (e.g. a registry mirror that serves packages but not PyPI's per-version JSON API).
        summary["reason"] = (
            f"offline: the vulnerability service answered for none of the {len(deps)} locked "
            f"packages ({skipped[0]['skip_reason']})"
        )
    else:
        summary["status"] = "vulnerable" if vulnerable else "clean"

Path(out).write_text(json.dumps(summary, indent=2) + "\n")
if summary["status"] == "skipped":
    reason = summary["reason"]
    if reason.startswith("offline: "):
        print(f"pip-audit skipped: offline ({reason[len('offline: '):]})")
    else:
        print(f"pip-audit skipped: {reason}")
else:
    print(
        f"pip-audit ({lock}): {summary['audited']} packages audited, "
        f"{summary['not_audited']} could not be, {len(vulnerable)} known vulnerabilities"
    )
    for item in vulnerable:
        fixes = ", ".join(item["fix_versions"]) or "no fix yet"
        print(f"  {item['name']} {item['version']}: {item['id']} (fixed in {fixes})")
    for d in skipped[:10]:
        print(f"  not audited: {d['skip_reason']}")
    if len(skipped) > 10:
        print(f"  ... and {len(skipped) - 10} more not audited")
print(f"summary: {out}")
EOF
exit 0

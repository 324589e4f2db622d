"""The guide's own client, copied faithfully: one ``requests.post`` per row, one row at a time.

This is the code of the platform's developer guide (shared/platform-api-guide.txt, "Full Example"), wrapped
in a loop over a manifest.  Only what the guide leaves as placeholders changes: the token URL takes the
authority from CALLJOURNEY_AUTHORITY instead of login.microsoftonline.com, the API URL the base URL, and
each answer is kept in a list instead of printed.  The guide calls ``requests.post`` (no Session), so every
row opens a new connection; that is part of what is being measured.

    python -m bench.sequential MANIFEST --limit 200

The last stdout line is a JSON object with the rows checked and the seconds the loop took.
"""

from __future__ import annotations

import argparse
import base64
import csv
import json
import os
import time
from datetime import UTC, datetime
from itertools import islice
from typing import Any

import requests

AUTHORITY = os.environ.get("CALLJOURNEY_AUTHORITY", "https://login.microsoftonline.com").rstrip("/")
BASE_URL = os.environ.get("CALLJOURNEY_BASE_URL", "https://platform-ca.calljourney.com").rstrip("/")


# ---- the guide's code (only the URLs' hosts are parameters) ------------------------------------------


def fetch_access_token(tenant_id: str, client_id: str, client_secret: str) -> str:
    token_url = f"{AUTHORITY}/{tenant_id}/oauth2/v2.0/token"
    data = {
        "client_id": client_id,
        "client_secret": client_secret,
        "scope": f"api://{client_id}/.default",
        "grant_type": "client_credentials",
    }
    response = requests.post(token_url, data=data)
    response.raise_for_status()
    access_token = response.json().get("access_token")
    if not access_token:
        raise ValueError("Access token not found in the response.")
    return str(access_token)


def is_token_expired(token: str) -> bool:
    try:
        payload_b64 = token.split(".")[1]
        payload_b64 += "=" * (4 - len(payload_b64) % 4)
        payload = json.loads(base64.urlsafe_b64decode(payload_b64))
        exp = payload.get("exp")
        if exp is None:
            return False
        expiry = datetime.fromtimestamp(exp, tz=UTC)
        return datetime.now(tz=UTC) >= expiry
    except Exception:
        return True


def check_row(access_token: str, company: str, organisation: str, folder: str, filename: str) -> Any:
    api_url = f"{BASE_URL}/api/v1/search/conversationexists"
    data = {"company": company, "organisation": organisation, "folder": folder, "filename": filename}
    headers = {"Authorization": f"Bearer {access_token}", "Content-Type": "application/json"}
    api_response = requests.post(api_url, json=data, headers=headers)
    if api_response.ok:
        return api_response.json()
    try:
        error = api_response.json()
        return f"Error {api_response.status_code}: {error.get('message') or error.get('error') or error}"
    except Exception:
        return f"Error {api_response.status_code}: {api_response.text}"


# ---- the loop around it ------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.sequential", description=__doc__.splitlines()[0])
    parser.add_argument("manifest")
    parser.add_argument("--limit", type=int, default=200, help="rows to check (a sample of the manifest)")
    args = parser.parse_args(argv)

    tenant_id = os.environ["CALLJOURNEY_TENANT_ID"]
    client_id = os.environ["CALLJOURNEY_CLIENT_ID"]
    client_secret = os.environ["CALLJOURNEY_CLIENT_SECRET"]
    started = time.perf_counter()
    access_token = fetch_access_token(tenant_id, client_id, client_secret)
    answers = []
    with open(args.manifest, encoding="utf-8", newline="") as handle:
        for row in islice(csv.DictReader(handle), args.limit):
            # The guide checks expiry before each call and refreshes when needed.
            if is_token_expired(access_token):
                access_token = fetch_access_token(tenant_id, client_id, client_secret)
            answers.append(check_row(access_token, row["company"], row["organisation"], row["folder"], row["filename"]))
    seconds = time.perf_counter() - started
    ok = sum(1 for a in answers if isinstance(a, dict))
    print(json.dumps({"rows": len(answers), "ok": ok, "seconds": round(seconds, 4)}))


if __name__ == "__main__":
    main()

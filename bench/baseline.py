"""The bare aiohttp loop: what a careful engineer writes in an afternoon, and the engine's yardstick.

One session, ``TCPConnector(limit=concurrency)``, a semaphore of the same size, one token fetched once,
``asyncio.gather`` over every row at once, no retries, results kept in a list and written to a CSV at
the end.  Deliberately nothing more: it is the floor the engine's machinery must not fall below.

    python -m bench.baseline MANIFEST --out results.csv --concurrency 100

Connection settings come from the same CALLJOURNEY_* variables the engine reads.  The last stdout line is
a JSON object with the row count, the statuses seen and the seconds spent.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import time
from collections import Counter
from typing import Any

import aiohttp


async def check_all(
    rows: list[dict[str, str]], *, base_url: str, token_url: str, form: dict[str, str], concurrency: int
) -> list[tuple[int, Any]]:
    """(HTTP status, parsed body) for every row, in manifest order."""
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.post(token_url, data=form) as response:
            response.raise_for_status()
            token = (await response.json())["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        url = base_url.rstrip("/") + "/api/v1/search/conversationexists"
        semaphore = asyncio.Semaphore(concurrency)

        async def check(row: dict[str, str]) -> tuple[int, Any]:
            async with semaphore, session.post(url, json=row, headers=headers) as response:
                return response.status, await response.json(content_type=None)

        return await asyncio.gather(*(check(row) for row in rows))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.baseline", description=__doc__.splitlines()[0])
    parser.add_argument("manifest")
    parser.add_argument("--out", required=True, help="CSV of the results")
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop (the engine does when installed)")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    env = os.environ
    client_id = env["CALLJOURNEY_CLIENT_ID"]
    form = {
        "client_id": client_id,
        "client_secret": env["CALLJOURNEY_CLIENT_SECRET"],
        "scope": f"api://{client_id}/.default",
        "grant_type": "client_credentials",
    }
    token_url = f"{env['CALLJOURNEY_AUTHORITY'].rstrip('/')}/{env['CALLJOURNEY_TENANT_ID']}/oauth2/v2.0/token"
    with open(args.manifest, encoding="utf-8", newline="") as handle:
        rows = [
            {k: row[k] for k in ("company", "organisation", "folder", "filename")} for row in csv.DictReader(handle)
        ]
    coroutine = check_all(
        rows, base_url=env["CALLJOURNEY_BASE_URL"], token_url=token_url, form=form, concurrency=args.concurrency
    )
    if args.uvloop:
        import uvloop

        results = uvloop.run(coroutine)
    else:
        results = asyncio.run(coroutine)
    statuses: Counter[str] = Counter()
    with open(args.out, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["company", "organisation", "folder", "filename", "status", "call_id"])
        for row, (status, body) in zip(rows, results, strict=True):
            verdict = ("present" if body.get("exists") else "missing") if status == 200 else f"http {status}"
            statuses[verdict] += 1
            writer.writerow([*row.values(), verdict, body.get("callId", "") if status == 200 else ""])
    print(json.dumps({"rows": len(rows), "statuses": statuses, "seconds": round(time.perf_counter() - started, 3)}))


if __name__ == "__main__":
    main()

"""Emulator figures: start and stop time, and the latency of one authenticated Web API read over HTTPS.

Run: ``.venv/bin/python -m bench.emulator [--requests N]``. Loopback figures: useful as the floor under every other
benchmark number (what the emulator itself costs per request), not as Dataverse latency.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import requests
from azure.identity import WorkloadIdentityCredential

from adp_identity_emulator import DEFAULT_SEED, Emulator, load_seed


def measure(count: int) -> dict[str, float]:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="adp-identity-bench-") as state:
        emulator = Emulator(load_seed(DEFAULT_SEED), state_dir=Path(state))
        emulator.start()
        up = time.perf_counter()
        env = emulator.credential_env("DefraDev")
        url = emulator.environment_url("defradev-dev")
        credential = WorkloadIdentityCredential(
            tenant_id=env["AZURE_TENANT_ID"],
            client_id=env["AZURE_CLIENT_ID"],
            token_file_path=env["AZURE_FEDERATED_TOKEN_FILE"],
            authority=env["AZURE_AUTHORITY_HOST"],
            connection_verify=env["REQUESTS_CA_BUNDLE"],
        )
        session = requests.Session()
        session.trust_env = False
        session.verify = emulator.ca_bundle
        session.headers["Authorization"] = f"Bearer {credential.get_token(f'{url}/.default').token}"
        latencies: list[float] = []
        for _ in range(count):
            before = time.perf_counter()
            session.get(f"{url}/api/data/v9.2/systemusers?$select=systemuserid", timeout=30).raise_for_status()
            latencies.append((time.perf_counter() - before) * 1000)
        stopping = time.perf_counter()
        emulator.stop()
        stopped = time.perf_counter()
    latencies.sort()
    return {
        "start_ms": (up - started) * 1000,
        "stop_ms": (stopped - stopping) * 1000,
        "get_median_ms": statistics.median(latencies),
        "get_p95_ms": latencies[int(0.95 * (len(latencies) - 1))],
        "requests": float(count),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.emulator", description=__doc__)
    parser.add_argument("--requests", type=int, default=300)
    figures = measure(parser.parse_args().requests)
    print(
        f"emulator start {figures['start_ms']:.0f} ms, stop {figures['stop_ms']:.0f} ms; authenticated "
        f"GET systemusers over HTTPS (keep-alive): median {figures['get_median_ms']:.2f} ms, "
        f"p95 {figures['get_p95_ms']:.2f} ms, n={figures['requests']:.0f}"
    )
    print("reproduce: .venv/bin/python -m bench.emulator --requests 300")


if __name__ == "__main__":
    main()

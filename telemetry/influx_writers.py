"""Blocking line-protocol writers for InfluxDB: the v2 API and the 1.x ``/write`` API.

Both take a batch of lines and either return (the server acknowledged every
line: HTTP 204) or raise :class:`WriteError` saying whether to retry the
same batch later (network down, 5xx, 429, auth or database missing) or
whether the data itself was refused (400/422: split the batch to find the bad
line) or too large (413).  Neither retries by itself: retrying is the
shipper's job, with backoff.

* :class:`InfluxV2Writer` (influxdb-client): InfluxDB 2.x/3.x, VictoriaMetrics'
  ``/api/v2/write``, and InfluxDB 1.8+ through its compatibility endpoint
  (token ``user:password``, bucket ``database/retention_policy``).
* :class:`InfluxV1Writer` (plain HTTP via urllib3): InfluxDB 1.x
  ``/write?db=&rp=&precision=ns`` with basic authentication.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from typing import Protocol, Sequence
from urllib.parse import urlencode

import urllib3
from influxdb_client import InfluxDBClient, WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.rest import ApiException


class WriteError(Exception):
    """A batch was not acknowledged.

    status: HTTP status (None: no answer); retryable: send the same batch
    again later; bad_data: the server refused (part of) the content;
    too_large: the batch must be smaller; retry_after_s [s]: server's hint.
    """

    def __init__(self, message: str, status: int | None = None, retryable: bool = True, bad_data: bool = False,
                 too_large: bool = False, retry_after_s: float | None = None):
        super().__init__(message)
        self.status = status
        self.retryable = retryable
        self.bad_data = bad_data
        self.too_large = too_large
        self.retry_after_s = retry_after_s

    @property
    def auth_failed(self) -> bool:
        return self.status in (401, 403)


class LineWriter(Protocol):
    """Something that writes a batch of line-protocol lines (timestamps in ns) or raises WriteError."""

    def write(self, lines: Sequence[str]) -> None: ...

    def close(self) -> None: ...


def classify_http(status: int, body: str, retry_after: str | None, where: str) -> WriteError:
    """Turn a non-2xx answer into a WriteError with the right retry decision."""
    try:
        detail = json.loads(body).get("error") or json.loads(body).get("message") or body
    except (ValueError, AttributeError):
        detail = body
    detail = str(detail).strip()[:300]
    hint = None
    if retry_after:
        try:
            hint = float(retry_after)
        except ValueError:
            hint = None
    msg = f"{where}: HTTP {status}: {detail}"
    if status in (400, 422):
        return WriteError(msg, status, retryable=False, bad_data=True)
    if status == 413:
        return WriteError(msg, status, retryable=False, too_large=True)
    # 401/403 (credentials), 404 (database/bucket missing), 429, 5xx: the batch
    # is fine, the server is not ready for it; keep it and try again later.
    return WriteError(msg, status, retryable=True, retry_after_s=hint)


@dataclass
class InfluxV1Writer:
    """InfluxDB 1.x writer: POST ``<url>/write?db=<database>&rp=<retention_policy>&precision=ns``.

    username/password: HTTP basic authentication (None: no authentication);
    timeout_s [s]: per request; gzip: compress bodies; ca_file: PEM bundle to
    trust for https.
    """

    url: str
    database: str
    retention_policy: str | None = None
    username: str | None = None
    password: str | None = None
    timeout_s: float = 10.0
    gzip: bool = False
    ca_file: str | None = None

    def __post_init__(self) -> None:
        if not self.database:
            raise ValueError("InfluxV1Writer: database is required")
        params = {"db": self.database, "precision": "ns"}
        if self.retention_policy:
            params["rp"] = self.retention_policy
        self._endpoint = f"{self.url.rstrip('/')}/write?{urlencode(params)}"
        self._headers = {"Content-Type": "text/plain; charset=utf-8"}
        if self.username is not None:
            self._headers.update(urllib3.make_headers(basic_auth=f"{self.username}:{self.password or ''}"))
        if self.gzip:
            self._headers["Content-Encoding"] = "gzip"
        self._http = urllib3.PoolManager(num_pools=2, maxsize=2, retries=False, ca_certs=self.ca_file,
                                         timeout=urllib3.Timeout(connect=min(5.0, self.timeout_s),
                                                                 read=self.timeout_s))

    def write(self, lines: Sequence[str]) -> None:
        """Send one batch; returns on HTTP 204, else raises WriteError."""
        if not lines:
            return
        body = "\n".join(lines).encode("utf-8")
        if self.gzip:
            body = gzip.compress(body, compresslevel=1)
        where = f"InfluxDB 1.x {self.url} db {self.database}"
        try:
            r = self._http.request("POST", self._endpoint, body=body, headers=self._headers)
        except urllib3.exceptions.HTTPError as exc:
            raise WriteError(f"{where}: no answer: {exc}") from None
        if r.status == 204:
            return
        raise classify_http(r.status, r.data.decode("utf-8", "replace"), r.headers.get("Retry-After"), where)

    def close(self) -> None:
        self._http.clear()


class InfluxV2Writer:
    """InfluxDB v2 write API through influxdb-client (synchronous, no internal retries).

    token: API token (InfluxDB 1.8 compatibility: ``user:password``; None:
    no Authorization header, e.g. VictoriaMetrics); org, bucket: where to
    write; timeout_s [s]; gzip; ca_file: PEM bundle to trust for https.
    """

    def __init__(self, url: str, bucket: str, org: str = "-", token: str | None = None, timeout_s: float = 10.0,
                 gzip: bool = False, ca_file: str | None = None):
        if not bucket:
            raise ValueError("InfluxV2Writer: bucket is required")
        self.url, self.bucket, self.org = url, bucket, org
        self._client = InfluxDBClient(url=url, token=token, org=org, timeout=int(timeout_s * 1000),
                                      enable_gzip=gzip, ssl_ca_cert=ca_file)
        self._api = self._client.write_api(write_options=SYNCHRONOUS)

    def write(self, lines: Sequence[str]) -> None:
        """Send one batch; returns when the server answered 204, else raises WriteError."""
        if not lines:
            return
        where = f"InfluxDB v2 API {self.url} bucket {self.bucket}"
        try:
            self._api.write(bucket=self.bucket, org=self.org, record="\n".join(lines),
                            write_precision=WritePrecision.NS)
        except ApiException as exc:
            headers = exc.headers or {}
            raise classify_http(exc.status or 0, exc.body or exc.reason or "", headers.get("Retry-After"),
                                where) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise WriteError(f"{where}: no answer: {exc}") from None

    def close(self) -> None:
        self._api.close()
        self._client.close()
